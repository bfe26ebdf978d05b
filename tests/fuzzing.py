"""Mutated dermoscopy instances for the intake fuzz test (tests/dicom_node/test_fuzz.py) and its long run
(bench/bench_fuzz.py): what a faulty PACS or an attacker sends, reproducible from a seed.

Each case is a Part 10 file sent as it is (pynetdicom's ``STORE_SEND_CHUNKED_DATASET``), so byte-level
damage reaches the node unchanged; the File Meta Information stays intact so that it can be sent at all.
Then every instance the node acknowledged goes through what analysis does with it: read, decode to RGB
(:func:`inference.outputs.pixels.rgb_pixels`), build and read back the SEGs and the SR. The networks
themselves are not run: they take any RGB array the decoder gives.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom import config as pydicom_config
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association

from dicom_node.contexts import ACCEPTED_TRANSFER_SYNTAXES
from dicom_node.ledger import Ledger
from inference.outputs.build import build_outputs
from inference.outputs.pixels import rgb_pixels
from tests.factories import DERMOSCOPY_SOP_CLASS, claim_dimensions, dermoscopy_dataset, encoded_dermoscopy_file
from tests.inference.predictions import make_prediction

ROWS, COLUMNS = 64, 96
PHOTOMETRICS = ["RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "PALETTE COLOR", "MONOCHROME1",
                "MONOCHROME2", "CMYK", "HSV", "ARGB", "", "rgb", "YBR_RCT"]
CHARSETS = ["ISO_IR 6", "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87", "GB18030", "ISO_IR 13", "ISO_IR 999",
            "", "ISO 2022 IR 6\\ISO 2022 IR 87", "UTF-8", "\\ISO 2022 IR 149"]

Mutation = Callable[[Dataset, random.Random], None]


def _dimensions(ds: Dataset, rng: random.Random) -> None:
    ds.Rows, ds.Columns = rng.choice([(0, COLUMNS), (ROWS, 0), (1, 1), (ROWS + 1, COLUMNS), (65535, 65535),
                                      (ROWS, COLUMNS - 1), (COLUMNS, ROWS)])


def _frames(ds: Dataset, rng: random.Random) -> None:
    frames = rng.choice([0, 1, 2, 3, 1000])
    ds.NumberOfFrames = frames
    if frames > 1 and "PixelData" in ds and rng.random() < 0.5:
        ds.PixelData = ds.PixelData * min(frames, 3)


def _photometric(ds: Dataset, rng: random.Random) -> None:
    ds.PhotometricInterpretation = rng.choice(PHOTOMETRICS)


def _samples(ds: Dataset, rng: random.Random) -> None:
    ds.SamplesPerPixel = rng.choice([0, 1, 2, 4])


def _bits(ds: Dataset, rng: random.Random) -> None:
    ds.BitsAllocated = rng.choice([1, 8, 12, 16, 32])
    ds.BitsStored = rng.choice([0, 1, 7, 8, 12, 16, 33])
    ds.HighBit = max(0, int(ds.BitsStored) - 1)


def _planar(ds: Dataset, rng: random.Random) -> None:
    ds.PlanarConfiguration = rng.choice([0, 1, 2])


def _representation(ds: Dataset, rng: random.Random) -> None:
    ds.PixelRepresentation = rng.choice([0, 1, 2])


def _pixel_length(ds: Dataset, rng: random.Random) -> None:
    if "PixelData" not in ds:
        return
    data = bytes(ds.PixelData)
    cut = rng.choice([-len(data), -len(data) // 2, -1, 1, 2, len(data)])
    ds.PixelData = data[:cut] if cut < 0 else data + b"\x80" * cut


def _charset(ds: Dataset, rng: random.Random) -> None:
    value = rng.choice(CHARSETS)
    ds.SpecificCharacterSet = value.split("\\") if "\\" in value else value


def _remove(ds: Dataset, rng: random.Random) -> None:
    keyword = rng.choice(["Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PhotometricInterpretation",
                          "PixelData", "StudyInstanceUID", "SeriesInstanceUID", "BitsStored"])
    if keyword in ds:
        delattr(ds, keyword)
    if "PixelData" in ds:
        ds["PixelData"].VR = "OB"  # no longer resolvable from Bits Allocated


def _nesting(ds: Dataset, rng: random.Random) -> None:
    inner = Dataset()
    inner.CodeMeaning = "deep"
    for _ in range(rng.choice([3, 15, 17, 60, 120])):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])


DATASET_MUTATIONS: dict[str, Mutation] = {
    "dimensions": _dimensions, "frames": _frames, "photometric": _photometric, "samples": _samples,
    "bits": _bits, "planar": _planar, "representation": _representation, "pixel-length": _pixel_length,
    "charset": _charset, "remove": _remove, "nesting": _nesting,
}


@dataclass
class FuzzCase:
    name: str
    path: Path


def _meta_end(raw: bytes) -> int:
    return 132 + 12 + struct.unpack("<I", raw[140:144])[0]


def _flip_bytes(path: Path, rng: random.Random) -> None:
    raw = bytearray(path.read_bytes())
    start = _meta_end(bytes(raw))
    for _ in range(rng.choice([1, 3, 10, 50])):
        at = rng.randrange(start, len(raw))
        raw[at] = rng.randrange(256)
    path.write_bytes(bytes(raw))


def _truncate(path: Path, rng: random.Random) -> None:
    raw = path.read_bytes()
    start = _meta_end(raw)
    path.write_bytes(raw[: rng.randrange(start, len(raw))])


def fuzz_cases(directory: Path, count: int, seed: int = 0) -> Iterator[FuzzCase]:
    """``count`` reproducible cases: dataset mutations, compressed streams (bombs, damaged), byte damage."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    encoded = {enc: dcmread(encoded_dermoscopy_file(directory / "encoded", enc, rows=ROWS, columns=COLUMNS))
               for enc in ("jpeg-baseline", "jpeg-ls", "j2k-rct")}
    with lenient_pydicom():
        for i in range(count):
            kind = rng.random()
            names: list[str] = []
            ds: Dataset
            if kind < 0.25:  # a compressed stream: valid, a bomb, a lie about its size, or damaged
                enc = rng.choice(sorted(encoded))
                ds = copy.deepcopy(encoded[enc])
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(_uid(rng))
                roll = rng.random()
                if roll < 0.4:
                    claim_dimensions(ds, *rng.choice([(65000, 65000), (20000, 30000), (8000, 8000), (ROWS, 999)]))
                    names.append(f"{enc}-claims")
                elif roll < 0.7:
                    data = bytearray(ds.PixelData)
                    for _ in range(rng.choice([1, 5, 40])):
                        at = rng.randrange(16, len(data))
                        data[at] = rng.randrange(256)
                    ds.PixelData = bytes(data)
                    names.append(f"{enc}-damaged")
                else:
                    names.append(enc)
            else:
                ds = dermoscopy_dataset(rows=ROWS, columns=COLUMNS, seed=i, sop_instance_uid=_uid(rng))
                for name in rng.sample(sorted(DATASET_MUTATIONS), rng.choice([0, 1, 1, 2])):
                    DATASET_MUTATIONS[name](ds, rng)
                    names.append(name)
            path = directory / f"case-{i:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            if rng.random() < 0.15:
                (_flip_bytes if rng.random() < 0.7 else _truncate)(path, rng)
                names.append("bytes")
            yield FuzzCase("+".join(names) or "valid", path)


def _uid(rng: random.Random) -> str:
    return f"1.2.826.0.1.3680043.8.498.99.{rng.randrange(1 << 60)}"


@contextlib.contextmanager
def lenient_pydicom() -> Iterator[None]:
    """pydicom's defaults, as in the node and worker processes (the test suite runs it strict)."""
    settings = pydicom_config.settings
    saved = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom_config.WARN
    try:
        yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


@dataclass
class FuzzResult:
    statuses: dict[str, int] = field(default_factory=dict)  # case file name -> status (-1: no response)
    names: dict[str, str] = field(default_factory=dict)
    associations: int = 0
    acknowledged_then_failed: list[str] = field(default_factory=list)
    analysed: int = 0


def send_cases(port: int, cases: Iterator[FuzzCase], result: FuzzResult) -> None:
    """Send each case as its file stands, re-associating whenever the node ends an association."""
    saved = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title="PYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for syntax in ACCEPTED_TRANSFER_SYNTAXES:  # one context each: an SCP accepts one syntax per context
        ae.add_requested_context(DERMOSCOPY_SOP_CLASS, syntax)
    assoc: Association | None = None
    try:
        for case in cases:
            if assoc is None or not assoc.is_established:
                assoc = ae.associate("127.0.0.1", port, ae_title="DERMNODE")
                result.associations += 1
                assert assoc.is_established, "the node stopped accepting associations"
            try:
                rsp = assoc.send_c_store(case.path)
                status = int(rsp.Status) if rsp is not None and "Status" in rsp else -1
            except (ValueError, AttributeError, OSError, KeyError):  # the file does not even parse for sending
                status = -2
            result.statuses[case.path.name] = status
            result.names[case.path.name] = case.name
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = saved
        if assoc is not None and assoc.is_established:
            assoc.release()


def analyse_acknowledged(ledger: Ledger, result: FuzzResult) -> None:
    """Every acknowledged instance through decode and output building, as the worker does it."""
    with lenient_pydicom():
        for study in ledger.studies():
            for instance in ledger.instances(study.study_uid):
                try:
                    ds = dcmread(instance.path)
                    image = rgb_pixels(ds)
                    prediction = make_prediction(rows=image.shape[0], columns=image.shape[1])
                    build_outputs([ds], [image], [prediction], uid_prefix="1.2.826.0.1.3680043.8.498.",
                                  content_datetime=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
                    result.analysed += 1
                except Exception as e:  # the finding this test exists for: acknowledged, then unanalysable
                    result.acknowledged_then_failed.append(f"{instance.sop_instance_uid}: {type(e).__name__}: {e}")
