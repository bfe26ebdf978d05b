"""``dermnode wrap-jpeg``: dermatoscope JPEGs become a valid dermoscopy study the node accepts as sent."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from dermnode.cli import main
from dicom_node.dermoscopy import JpegError, read_jpeg_frame
from dicom_node.node import Node
from inference.outputs.pixels import rgb_pixels
from tests import dcmtk
from tests.dciodvfy import dciodvfy_problems
from tests.factories import lesion_image


def _jpeg(path: Path, progressive: bool = False, rows: int = 150, columns: int = 200) -> Path:
    Image.fromarray(lesion_image(rows, columns, seed=3)).save(path, "JPEG", quality=90, progressive=progressive)
    return path


def test_wrapped_jpegs_are_valid_accepted_and_decode_to_the_photo(node: Node, tmp_path: Path) -> None:
    photos = [_jpeg(tmp_path / "a.jpg"), _jpeg(tmp_path / "b.jpg", rows=120, columns=160)]
    out = tmp_path / "study"
    assert main(["wrap-jpeg", *map(str, photos), "--out", str(out), "--patient-id", "P1",
                 "--patient-name", "Doe^Jane", "--laterality", "L"]) == 0
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 2
    datasets = [dcmread(f) for f in files]
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert all(ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50" for ds in datasets)
    assert dciodvfy_problems(files[0]) == []
    sent = dcmtk.storescu(node.port, files)  # DCMTK storescu -R -xy, as the README says
    assert sent.returncode == 0, sent.stderr
    stored = node.ledger.instances(datasets[0].StudyInstanceUID)
    assert len(stored) == 2
    for ds, photo in zip(datasets, photos, strict=True):
        decoded = rgb_pixels(ds)
        reference = np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
        assert decoded.shape == reference.shape
        assert np.abs(decoded.astype(np.int16) - reference).mean() < 3  # same JPEG, decoder rounding only


def test_progressive_and_non_jpeg_files_are_refused_with_advice(tmp_path: Path) -> None:
    progressive = _jpeg(tmp_path / "p.jpg", progressive=True).read_bytes()
    with pytest.raises(JpegError, match="re-save it as baseline"):
        read_jpeg_frame(progressive, "p.jpg")
    png = io.BytesIO()
    Image.fromarray(lesion_image()).save(png, "PNG")
    with pytest.raises(JpegError, match="not a JPEG file"):
        read_jpeg_frame(png.getvalue(), "x.png")
    assert main(["wrap-jpeg", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "o"), "--patient-id", "P"]) == 2
