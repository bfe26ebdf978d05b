"""Real HAM10000 lesions, out of the box: JPEG dermoscopy DICOM → dermnode (shipped bundles) → storescp.

The JPEG files are wrapped as they are (JPEG Baseline, YBR_FULL_422), as a dermatoscope would send
them. The returned lesion SEG is compared with the dermatologists' mask. Images come from the fixed
validation split, never trained on. Skips when ../shared/data/dermoscopy is absent.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from inference.training.data import read_ids
from tests import dcmtk
from tests.conftest import SHARED_DATA
from tests.e2e import check_outputs, expected_objects, serve_args
from tests.factories import dermoscopy_dataset
from tests.processes import DermnodeProcess

pytestmark = [pytest.mark.shared_data, pytest.mark.e2e]

N_IMAGES = 5


def _validation_ham_with_masks() -> list[dict[str, str]]:
    if not (SHARED_DATA / "labels.csv").is_file():
        pytest.skip(f"shared dermoscopy data not found at {SHARED_DATA}")
    ids = set(read_ids())
    with (SHARED_DATA / "labels.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image_id"] in ids and r["source"] == "HAM10000" and r["mask_path"]]
    rows.sort(key=lambda r: r["image_id"])
    return rows[:: max(1, len(rows) // N_IMAGES)][:N_IMAGES]


def _as_dicom(row: dict[str, str], study_uid: str, number: int, out: Path) -> Path:
    jpeg = (SHARED_DATA / row["image_path"]).read_bytes()
    width, height = Image.open(SHARED_DATA / row["image_path"]).size
    ds = dermoscopy_dataset(study_uid=study_uid, rows=height, columns=width, instance_number=number,
                            pixel_spacing_mm=None)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    path = out / f"{row['image_id']}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def test_shipped_models_outline_real_lesions(tmp_path: Path, destination: dcmtk.StoreSCP) -> None:
    rows = _validation_ham_with_masks()
    study_uid = generate_uid()
    (tmp_path / "in").mkdir()
    files = [_as_dicom(r, study_uid, i + 1, tmp_path / "in") for i, r in enumerate(rows)]
    node = DermnodeProcess(serve_args(tmp_path / "node", destination))
    try:
        assert dcmtk.storescu(node.wait_listening(), files).returncode == 0
        received = destination.wait_for(expected_objects(len(files)), timeout=180)
    finally:
        node.stop()
    check_outputs(received, len(files), study_uid)
    by_source = {dcmread(f).SOPInstanceUID: r for f, r in zip(files, rows, strict=True)}
    dice = []
    for path in received:
        seg = dcmread(path)
        if seg.Modality != "SEG" or seg.ContentLabel != "LESION":
            continue
        row = by_source[seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID]
        truth = np.asarray(Image.open(SHARED_DATA / row["mask_path"])) > 127
        predicted = seg.pixel_array.astype(bool).reshape(truth.shape)
        dice.append(_dice(predicted, truth))
    assert len(dice) == len(files)
    assert float(np.median(dice)) >= 0.8, f"Dice against the dermatologists' masks: {dice}"
