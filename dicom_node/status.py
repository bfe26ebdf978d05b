"""DIMSE status codes the node sends and reads (PS3.4 Annex B Table B.2-1, PS3.7 Annex C).

PS3.4 B.2.3 leaves the low bits of the C-STORE failure classes to the SCP: 0xA7xx "Refused: out of
resources", 0xA9xx "Error: data set does not match SOP class", 0xCxxx "Error: cannot understand".
dermnode uses the named values below, each listed in ``conformance/ConformanceStatement.md``.
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """C-STORE and C-ECHO statuses dermnode returns; a handler's return value is one of these."""

    SUCCESS = 0x0000
    #: Refused: out of resources (spool or ledger could not make the instance durable, or the disk
    #: is below its free-space watermark).
    OUT_OF_RESOURCES = 0xA700
    #: Error: data set does not match SOP class (missing or invalid UIDs, required attributes, pixel
    #: attributes that contradict each other or the pixel data).
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: Error: cannot understand (unparseable data set, undecodable pixel data, including a decode that ran
    #: past ``max_decode_s`` or crashed its decoder process).
    CANNOT_UNDERSTAND = 0xC000
    #: Error: cannot understand — the image (Rows × Columns, or what a compressed frame header claims)
    #: is larger than the configured ``max_image_pixels``, or the data set larger than its bound.
    IMAGE_TOO_LARGE = 0xC001
    #: Error: cannot understand — an image the analysis cannot process: more than one frame, or a
    #: photometric interpretation or bit depth outside the supported set.
    UNSUPPORTED_IMAGE = 0xC002
    #: Error: cannot understand — a Specific Character Set that pydicom cannot decode.
    UNSUPPORTED_CHARACTER_SET = 0xC003

    @staticmethod
    def is_success_or_warning(code: int) -> bool:
        """True for success (0x0000) and the C-STORE warnings (0xB000–0xBFFF): the peer kept the object."""
        return code == 0x0000 or 0xB000 <= code <= 0xBFFF
