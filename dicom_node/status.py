"""DIMSE status codes the node sends and reads (PS3.4 Annex B Table B.2-1, PS3.7 Annex C)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """C-STORE and C-ECHO statuses dermnode returns; a handler's return value is one of these."""

    SUCCESS = 0x0000
    #: Refused: out of resources (spool or ledger could not make the instance durable).
    OUT_OF_RESOURCES = 0xA700
    #: Error: data set does not match SOP class (missing or invalid UIDs, required attributes).
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: Error: cannot understand (unparseable data set, undecodable pixel data).
    CANNOT_UNDERSTAND = 0xC000

    @staticmethod
    def is_success_or_warning(code: int) -> bool:
        """True for success (0x0000) and the C-STORE warnings (0xB000–0xBFFF): the peer kept the object."""
        return code == 0x0000 or 0xB000 <= code <= 0xBFFF
