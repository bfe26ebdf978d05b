"""Frame headers read without decoding: the dimensions a compressed frame claims."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.encaps import generate_fragments

from dicom_node.codestream import CodestreamError, FrameHeader, frame_header, jpeg2000_header, jpeg_header
from tests.factories import claim_dimensions, encoded_dermoscopy_file


def _frame(path: Path) -> bytes:
    fragments = generate_fragments(dcmread(path).PixelData)
    next(fragments)
    return next(fragments)


@pytest.mark.parametrize(("encoding", "codec", "precision"),
                         [("jpeg-baseline", "jpeg", 8), ("jpeg-ls", "jpeg-ls", 8), ("j2k-rct", "jpeg2000", 8)])
def test_headers_of_real_streams(tmp_path: Path, encoding: str, codec: str, precision: int) -> None:
    frame = _frame(encoded_dermoscopy_file(tmp_path, encoding, rows=96, columns=128))
    assert frame_header(frame, codec) == FrameHeader(96, 128, 3, precision)


@pytest.mark.parametrize("encoding", ["jpeg-baseline", "j2k-rct"])
def test_a_bomb_header_is_read_as_claimed(tmp_path: Path, encoding: str) -> None:
    ds = dcmread(encoded_dermoscopy_file(tmp_path, encoding))
    claim_dimensions(ds, 65000, 65000)
    fragments = generate_fragments(ds.PixelData)
    next(fragments)
    header = frame_header(next(fragments), "jpeg" if encoding.startswith("jpeg") else "jpeg2000")
    assert (header.rows, header.columns) == (65000, 65000)


def test_jp2_box_wrapped_codestream(tmp_path: Path) -> None:
    code = _frame(encoded_dermoscopy_file(tmp_path, "j2k-rct"))
    jp2 = (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x14ftypjp2 \x00\x00\x00\x00jp2 "
           + (8 + len(code)).to_bytes(4, "big") + b"jp2c" + code)
    assert jpeg2000_header(jp2).rows == 96


@pytest.mark.parametrize(("data", "message"), [
    (b"", "SOI"),
    (b"\xff\xd8\xff\xda\x00\x02", "no JPEG frame header"),
    (b"\xff\xd8\xff\xc0\x00\x11\x08\x00", "truncated"),
    (b"\xff\xd8" + b"\xff\xe0\x00\x02" * 300, "no JPEG frame header"),
])
def test_broken_jpeg_headers_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CodestreamError, match=message):
        jpeg_header(data)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "neither a JPEG 2000 codestream"),
    (b"\xff\x4f\xff\x51\x00", "complete SIZ"),
    (b"\x00\x00\x00\x00abcd", "neither a JPEG 2000 codestream"),
])
def test_broken_jpeg2000_headers_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CodestreamError, match=message):
        jpeg2000_header(data)


def test_unknown_codec_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="codec must be"):
        frame_header(b"", "rle")
