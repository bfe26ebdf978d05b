"""Conventions shared by the output objects (SEG and SR): names, series numbers, disclaimers, tracking.

Series numbers are fixed so that viewers sort dermnode's series the same way in every study.
"""

from __future__ import annotations

from pydicom import Dataset

from inference.identity import DEFAULT_UID_PREFIX, derive_uid
from inference.prediction import ModelIdentity

MANUFACTURER = "dermnode"
NOT_FOR_DIAGNOSIS = "AI-generated, not for diagnostic use"
REPORT_SERIES_NUMBER = 9100
LESION_SEG_SERIES_NUMBER = 9101
ATTENTION_SEG_SERIES_NUMBER = 9102
_LO_LIMIT = 64


def series_description(model: ModelIdentity, *, kind: str = "", untrained: bool | None = None) -> str:
    """SeriesDescription (LO, at most 64 characters), e.g. "Attention cls 1.2, AI-generated, not for ...".

    Always ends with the disclaimer and says UNTRAINED when ``untrained`` (default: the model is not
    trained); the model name is shortened (marked "~") when the whole would not fit.
    """
    flag = " UNTRAINED" if (not model.trained if untrained is None else untrained) else ""
    tail = f"{flag}, {NOT_FOR_DIAGNOSIS}"
    version = model.version[:12]
    prefix = f"{kind} " if kind else ""
    room = _LO_LIMIT - len(tail) - len(prefix) - len(version) - 1
    if room < 2:  # never cut the disclaimer: drop the kind first
        prefix, room = "", room + len(prefix)
    name = model.name if len(model.name) <= room else model.name[: room - 1] + "~"
    return f"{prefix}{name} {version}{tail}"


def lesion_tracking_uid(source: Dataset, prefix: str = DEFAULT_UID_PREFIX) -> str:
    """Tracking UID of the lesion of ``source``: shared by its SEG segment and its SR group."""
    return str(derive_uid("lesion-tracking", [str(source.SOPInstanceUID)], prefix))


def lesion_tracking_id(source: Dataset) -> str:
    """Human-readable tracking identifier of the lesion of ``source``."""
    number = source.get("InstanceNumber")
    return f"Lesion of image {number}" if number not in (None, "") else "Lesion"
