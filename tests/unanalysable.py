"""Data sets that analysis cannot process, one per refusal case of the conformance statement.

Each case names the spoiling, the status intake returns and the words of its message. Shared by
tests/dicom_node/test_intake.py and tests/conformance (which provokes every row of its table).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicom_node.status import Status
from tests.factories import claim_dimensions, dermoscopy_dataset, encoded_dermoscopy_file


def _multi_frame(ds: Dataset) -> None:
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2


def _palette(ds: Dataset) -> None:
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.SamplesPerPixel = 1
    del ds.PlanarConfiguration
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]


def _rows_zero(ds: Dataset) -> None:
    ds.Rows = 0


def _spp_contradicts(ds: Dataset) -> None:
    ds.PhotometricInterpretation = "MONOCHROME2"


def _bits_12(ds: Dataset) -> None:
    ds.BitsAllocated = 12


def _too_long(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData + b"\x00" * 100


def _huge_header(ds: Dataset) -> None:
    ds.Rows, ds.Columns = 30000, 30000


def _bits_stored_over(ds: Dataset) -> None:
    ds.BitsStored = 9


def _unknown_charset(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "ISO_IR 999"


def _deep_sequences(ds: Dataset) -> None:
    inner = Dataset()
    inner.CodeMeaning = "deep"
    for _ in range(40):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])


def _bad_number(ds: Dataset) -> None:
    # Instance Number (IS) "1x", stored as raw bytes: written as it stands, as a careless sender would
    ds[0x00200013] = RawDataElement(Tag(0x00200013), "IS", 2, b"1x", 0, False, True)


def _bad_date(ds: Dataset) -> None:
    ds[0x00100030] = RawDataElement(Tag(0x00100030), "DA", 8, b"1970x101", 0, False, True)


def _no_modality(ds: Dataset) -> None:
    del ds.Modality


def _no_bits_stored(ds: Dataset) -> None:
    del ds.BitsStored


#: (case as in the conformance table, spoiling, status, message words)
REFUSED: list[tuple[str, Callable[[Dataset], None], Status, str]] = [
    ("multi-frame", _multi_frame, Status.UNSUPPORTED_IMAGE, "2 frames"),
    ("palette colour", _palette, Status.UNSUPPORTED_IMAGE, "'PALETTE COLOR' is not analysed"),
    ("rows 0", _rows_zero, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, "Rows 0 x Columns 128 is empty"),
    ("samples vs photometric", _spp_contradicts, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
     "Samples per Pixel 3 contradicts"),
    ("bits allocated 12", _bits_12, Status.UNSUPPORTED_IMAGE, "Bits Allocated 12 is not 8 or 16"),
    ("bits stored over allocated", _bits_stored_over, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, "Bits Stored 9"),
    ("pixel data too long", _too_long, Status.CANNOT_UNDERSTAND, "Pixel Data has 36964 bytes"),
    ("over the pixel limit", _huge_header, Status.IMAGE_TOO_LARGE, "900000000 pixels exceeds the limit"),
    ("unknown character set", _unknown_charset, Status.UNSUPPORTED_CHARACTER_SET, "'ISO_IR 999' is not supported"),
    ("deeply nested sequences", _deep_sequences, Status.CANNOT_UNDERSTAND, "nested deeper than 16"),
    ("number string not a number", _bad_number, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
     r"element \(0020,0013\) \(IS\) does not hold a number"),
    ("date not a date", _bad_date, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
     r"element \(0010,0030\) \(DA\) is not a valid DA value"),
    ("modality missing", _no_modality, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, "Modality is missing"),
    ("bits stored missing", _no_bits_stored, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, "BitsStored is missing"),
]


def bomb(directory: Path, rows: int = 65000, columns: int = 65000) -> Dataset:
    """A few-KB JPEG baseline instance whose frame header claims ``rows`` x ``columns`` pixels."""
    return claim_dimensions(dcmread(encoded_dermoscopy_file(directory, "jpeg-baseline")), rows, columns)


#: ``max_decode_s`` under which :func:`slow_to_decode` is refused: its frame takes about 0.4 s to decode on
#: one core of the development machine, and surely more than 20 times this anywhere.
SLOW_DECODE_LIMIT_S = 0.02


def slow_to_decode(directory: Path, **kwargs: object) -> Path:
    """A valid JPEG baseline instance of 2000 x 3000 pixels (far below the pixel limit) whose decode takes
    longer than :data:`SLOW_DECODE_LIMIT_S`: what a decode past ``max_decode_s`` looks like, for real."""
    return encoded_dermoscopy_file(directory, "jpeg-baseline", rows=2000, columns=3000, **kwargs)


def spoiled(case: str) -> Dataset:
    """A fresh dermoscopy data set spoiled as ``case`` of :data:`REFUSED`."""
    spoil = {name: fn for name, fn, _, _ in REFUSED}[case]
    ds = dermoscopy_dataset()
    spoil(ds)
    return ds
