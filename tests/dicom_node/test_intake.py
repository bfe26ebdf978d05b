"""Intake refuses, before Success, every image the analysis cannot process (issue 10)."""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom import config as pydicom_config
from pydicom.dataset import FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from dicom_node.intake import IntakeError, check_received, max_dataset_bytes
from dicom_node.node import Node
from dicom_node.sandbox import DecodeSandbox
from dicom_node.status import Status
from inference.outputs.build import build_outputs
from inference.outputs.pixels import rgb_pixels
from tests.factories import claim_dimensions, dermoscopy_dataset, encoded_dermoscopy_file
from tests.inference.predictions import make_prediction
from tests.scu import c_store
from tests.unanalysable import REFUSED, bomb


@pytest.fixture(autouse=True)
def lenient_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests write deliberately invalid data sets, as a faulty sender would, and read them as the
    node process does (pydicom's default validation, not the suite's strict one)."""
    monkeypatch.setattr(pydicom_config.settings, "writing_validation_mode", pydicom_config.WARN)
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.WARN)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[DecodeSandbox]:
    """The decoder processes intake decodes in, shared by this module's tests."""
    with DecodeSandbox(2) as pool:
        yield pool


def _check(tmp_path: Path, ds: Dataset, sandbox: DecodeSandbox, max_image_pixels: int = 50_000_000) -> None:
    path = tmp_path / "in.dcm"
    ds.save_as(path, enforce_file_format=True)
    check_received(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), max_image_pixels, sandbox=sandbox)


@pytest.mark.parametrize(("case", "spoil", "status", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_unanalysable_images_are_refused_with_their_status(
    tmp_path: Path, sandbox: DecodeSandbox, case: str, spoil: Callable[[Dataset], None], status: Status,
    message: str,
) -> None:
    del case
    ds = dermoscopy_dataset()
    spoil(ds)
    with pytest.raises(IntakeError, match=message) as caught:
        _check(tmp_path, ds, sandbox)
    assert caught.value.status == status
    assert str(ds.SOPInstanceUID) in str(caught.value)


@pytest.mark.parametrize("claimed", [(20000, 20000), (65000, 65000), (8000, 8000)])
@pytest.mark.parametrize("encoding", ["jpeg-baseline", "jpeg-ls", "j2k-rct"])
def test_decompression_bombs_are_refused_from_the_frame_header(
    tmp_path: Path, sandbox: DecodeSandbox, encoding: str, claimed: tuple[int, int]
) -> None:
    ds = claim_dimensions(dcmread(encoded_dermoscopy_file(tmp_path, encoding)), *claimed)
    with pytest.raises(IntakeError, match=f"claims {claimed[0]} x {claimed[1]} pixels") as caught:
        _check(tmp_path, ds, sandbox, max_image_pixels=10_000_000)
    assert caught.value.status == Status.IMAGE_TOO_LARGE


def test_a_frame_header_contradicting_rows_and_columns_is_refused(tmp_path: Path, sandbox: DecodeSandbox) -> None:
    ds = claim_dimensions(dcmread(encoded_dermoscopy_file(tmp_path, "jpeg-baseline")), 100, 100)
    with pytest.raises(IntakeError, match="frame is 100 x 100 x 3, the data set says 96 x 128 x 3") as caught:
        _check(tmp_path, ds, sandbox)
    assert caught.value.status == Status.DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_the_pixel_limit_is_configurable(tmp_path: Path, sandbox: DecodeSandbox) -> None:
    with pytest.raises(IntakeError, match="12288 pixels exceeds the limit of 12287"):
        _check(tmp_path, dermoscopy_dataset(), sandbox, max_image_pixels=96 * 128 - 1)
    _check(tmp_path, dermoscopy_dataset(), sandbox, max_image_pixels=96 * 128)


def test_a_deflate_bomb_is_measured_not_inflated(tmp_path: Path, sandbox: DecodeSandbox) -> None:
    ds = dermoscopy_dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    meta_end = 132 + 12 + int(dcmread(path, stop_before_pixels=True).file_meta.FileMetaInformationGroupLength)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = compressor.compress(b"\x00" * (max_dataset_bytes(1000) + 1)) + compressor.flush()
    path.write_bytes(path.read_bytes()[:meta_end] + bomb)
    with pytest.raises(IntakeError, match="inflates beyond the bound"):
        check_received(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), 1000, sandbox=sandbox)


@pytest.mark.parametrize("encoding", ["native-rgb", "native-planar1", "native-ybr-full", "monochrome2",
                                      "jpeg-baseline", "jpeg-ls", "j2k-rct", "j2k-ict"])
def test_every_supported_encoding_is_accepted(tmp_path: Path, sandbox: DecodeSandbox, encoding: str) -> None:
    ds = dcmread(encoded_dermoscopy_file(tmp_path, encoding))
    _check(tmp_path, ds, sandbox)


def test_rle_is_accepted(tmp_path: Path, sandbox: DecodeSandbox) -> None:
    ds = dermoscopy_dataset()
    ds.compress(RLELossless)
    _check(tmp_path, ds, sandbox)


#: Specific Character Sets real senders use, with a name in each; all are accepted and analysed.
CHARACTER_SETS = [
    ("ISO_IR 6", "Smith^John"),
    ("ISO_IR 100", "Müller^Hans"),
    ("ISO_IR 192", "Müller^Hans"),
    ("ISO 2022 IR 87", "Yamada^Tarou"),
    ("ISO 2022 IR 6\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"),
    ("GB18030", "Wang^XiaoDong=王^小东"),
    ("ISO_IR 144", "Lyuksemburg^Anna"),
]


@pytest.mark.parametrize(("charset", "name"), CHARACTER_SETS, ids=[c for c, _ in CHARACTER_SETS])
def test_every_accepted_character_set_is_analysed(
    tmp_path: Path, sandbox: DecodeSandbox, charset: str, name: str
) -> None:
    ds = dermoscopy_dataset(patient_name=name)
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    _check(tmp_path, ds, sandbox)
    source = dcmread(tmp_path / "in.dcm")
    image = rgb_pixels(source)
    objects = build_outputs([source], [image], [make_prediction()], uid_prefix="1.2.826.0.1.3680043.8.498.",
                            content_datetime=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert [o.kind for o in objects] == ["seg", "attention-seg", "attention-levels-seg", "sr"]
    assert all(str(o.dataset.PatientName) == str(source.PatientName) for o in objects)


def test_the_node_refuses_each_case_and_logs_the_uid_not_the_patient(
    node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dermnode"):
        for _, spoil, status, _ in REFUSED:
            ds = dermoscopy_dataset(patient_name="Secret^Person", patient_id="PID-SECRET")
            spoil(ds)
            assert c_store(node.port, ds) == status, ds.SOPInstanceUID
            assert ds.SOPInstanceUID in caplog.text
        assert c_store(node.port, bomb(tmp_path)) == Status.IMAGE_TOO_LARGE
        assert c_store(node.port, dermoscopy_dataset()) == Status.SUCCESS
    assert "Secret" not in caplog.text and "PID-SECRET" not in caplog.text
    assert node.ledger.studies()[0].instance_count == 1


def test_native_16_bit_rgb_is_accepted(tmp_path: Path, sandbox: DecodeSandbox) -> None:
    ds = dermoscopy_dataset()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = (np.frombuffer(ds.PixelData, np.uint8).astype(np.uint16) << 4).tobytes()
    _check(tmp_path, ds, sandbox)
    assert rgb_pixels(dcmread(tmp_path / "in.dcm")).shape == (96, 128, 3)


def test_unparseable_bytes_are_cannot_understand(tmp_path: Path, sandbox: DecodeSandbox) -> None:
    path = tmp_path / "junk.dcm"
    ds = dermoscopy_dataset()
    ds.file_meta = FileMetaDataset(ds.file_meta)
    ds.save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes()[:400] + b"\xff" * 50)
    with pytest.raises(IntakeError, match="the data set cannot be parsed") as caught:
        check_received(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), sandbox=sandbox)
    assert caught.value.status == Status.CANNOT_UNDERSTAND
