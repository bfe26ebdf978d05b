"""Image dimensions read from a compressed frame's own header, without decoding it.

A decompression bomb is a small stream whose header claims an enormous image: the decoder allocates
what the header says. The node reads the frame header here (JPEG SOF, PS3.5 A.4.1 / ISO 10918-1 B.2.2;
JPEG-LS SOF55, ISO 14495-1 C.2.2; JPEG 2000 SIZ, ISO 15444-1 A.5.1, bare or inside a JP2 ``jp2c`` box)
and compares it with Rows, Columns and the pixel limit before any decoder sees the stream.
RLE Lossless (PS3.5 G) has no dimensions of its own: its decoder is bounded by Rows × Columns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dermnode.kernel.errors import DermnodeError


class CodestreamError(DermnodeError):
    """A compressed frame's header is missing, truncated or not of the expected kind."""


@dataclass(frozen=True)
class FrameHeader:
    """What a compressed frame says about itself."""

    rows: int
    columns: int
    components: int
    precision: int


#: JPEG start-of-frame markers (SOF0–SOF15 without DHT 0xC4, JPG 0xC8, DAC 0xCC) and JPEG-LS SOF55.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
#: Markers that stand alone (no length field): TEM, RST0–7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
#: Markers read before giving up on finding a frame header.
_MAX_SEGMENTS = 256


def jpeg_header(frame: bytes) -> FrameHeader:
    """The SOF header of a JPEG (ISO 10918-1) or JPEG-LS (ISO 14495-1) frame."""
    if frame[:2] != b"\xff\xd8":
        raise CodestreamError("the frame does not start with a JPEG SOI marker (FF D8)")
    pos = 2
    for _ in range(_MAX_SEGMENTS):
        while pos < len(frame) and frame[pos] == 0xFF and pos + 1 < len(frame) and frame[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(frame) or frame[pos] != 0xFF:
            break
        marker = frame[pos + 1]
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", frame[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if length < 8 or pos + 2 + 8 > len(frame):
                raise CodestreamError("the JPEG frame header (SOF) is truncated")
            precision, rows, columns, components = struct.unpack(">BHHB", frame[pos + 4 : pos + 10])
            return FrameHeader(rows, columns, components, precision)
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise CodestreamError("no JPEG frame header (SOF) was found before the scan data")


def _siz(codestream: bytes, at: int) -> FrameHeader:
    # SOC (FF4F) then SIZ (FF51): Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz, Ssiz…
    if codestream[at : at + 4] != b"\xff\x4f\xff\x51" or len(codestream) < at + 4 + 38 + 1:
        raise CodestreamError("the JPEG 2000 codestream does not start with SOC and a complete SIZ marker")
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", codestream[at + 8 : at + 24])
    (components,) = struct.unpack(">H", codestream[at + 40 : at + 42])
    ssiz = codestream[at + 42]
    if xsiz < xosiz or ysiz < yosiz:
        raise CodestreamError("the JPEG 2000 image offset lies outside the image")
    return FrameHeader(ysiz - yosiz, xsiz - xosiz, components, (ssiz & 0x7F) + 1)


def jpeg2000_header(frame: bytes) -> FrameHeader:
    """The SIZ header of a JPEG 2000 frame: a bare codestream or a JP2 file with a ``jp2c`` box."""
    if frame[:2] == b"\xff\x4f":
        return _siz(frame, 0)
    pos = 0
    for _ in range(_MAX_SEGMENTS):
        if pos + 8 > len(frame):
            break
        length, kind = struct.unpack(">I4s", frame[pos : pos + 8])
        header = 8
        if length == 1:
            if pos + 16 > len(frame):
                break
            (length,) = struct.unpack(">Q", frame[pos + 8 : pos + 16])
            header = 16
        if kind == b"jp2c":
            return _siz(frame, pos + header)
        if length < header:
            break
        pos += length
    raise CodestreamError("neither a JPEG 2000 codestream (SOC) nor a JP2 box holding one was found")


def frame_header(frame: bytes, codec: str) -> FrameHeader:
    """Dispatch on ``codec`` (``"jpeg"``, ``"jpeg-ls"`` or ``"jpeg2000"``)."""
    if codec in ("jpeg", "jpeg-ls"):
        return jpeg_header(frame)
    if codec == "jpeg2000":
        return jpeg2000_header(frame)
    raise ValueError(f"codec must be 'jpeg', 'jpeg-ls' or 'jpeg2000', got {codec!r}")
