"""Decoding of every accepted dermoscopy encoding to uint8 RGB (inference/pixels.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from dermnode.kernel.errors import InferenceError
from inference.outputs.pixels import rgb_pixels
from tests.factories import (
    ENCODINGS,
    LOSSY_ENCODINGS,
    dermoscopy_dataset,
    encoded_dermoscopy_file,
    lesion_image,
)

DCMTK_ENCODINGS = {"jpeg-baseline", "jpeg-baseline-444", "jpeg-baseline-rgb", "jpeg-ls"}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_decodes_close_to_the_original(tmp_path: Path, encoding: str) -> None:
    if encoding in DCMTK_ENCODINGS and shutil.which("dcmcjpeg") is None:
        pytest.skip("DCMTK is not installed")
    path = encoded_dermoscopy_file(tmp_path, encoding, rows=48, columns=64, seed=3)
    ds = dcmread(path)
    rgb = rgb_pixels(ds)
    original = lesion_image(48, 64, seed=3)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (48, 64, 3)
    assert rgb.flags.c_contiguous
    if encoding == "monochrome2":
        grey = original.mean(axis=2).round()
        assert np.array_equal(rgb[..., 0], grey.astype(np.uint8))
        assert np.array_equal(rgb[..., 0], rgb[..., 2])
    elif encoding in LOSSY_ENCODINGS:
        diff = np.abs(rgb.astype(int) - original.astype(int))
        assert diff.mean() < 8.0, f"{encoding}: mean error {diff.mean():.2f}"
        # The lesion must still be where it was: no flip, shift or channel swap.
        assert rgb[24, 35, 0] < 160 < rgb[2, 2, 0]
    else:
        assert np.array_equal(rgb, original)


def test_missing_pixel_data_names_the_instance() -> None:
    ds = dermoscopy_dataset(sop_instance_uid="1.2.3.4")
    del ds.PixelData
    with pytest.raises(InferenceError, match=r"1\.2\.3\.4.*transfer syntax 1\.2\.840\.10008\.1\.2\.1"):
        rgb_pixels(ds)


def test_corrupt_jpeg_names_instance_and_transfer_syntax(tmp_path: Path) -> None:
    if shutil.which("dcmcjpeg") is None:
        pytest.skip("DCMTK is not installed")
    path = encoded_dermoscopy_file(tmp_path, "jpeg-baseline", sop_instance_uid="1.2.3.5", rows=32, columns=32)
    ds = dcmread(path)
    ds.PixelData = ds.PixelData[:40] + b"\x00" * 16 + ds.PixelData[-8:]
    with pytest.raises(InferenceError, match=r"1\.2\.3\.5.*1\.2\.840\.10008\.1\.2\.4\.50"):
        rgb_pixels(ds)


def test_unsupported_photometric_interpretation_is_refused() -> None:
    ds = dermoscopy_dataset(sop_instance_uid="1.2.3.6")
    ds.PhotometricInterpretation = "PALETTE COLOR"
    with pytest.raises(InferenceError, match=r"1\.2\.3\.6.*PALETTE COLOR"):
        rgb_pixels(ds)
