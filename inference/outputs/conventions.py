"""Conventions shared by the output objects (SEG and SR): names, series numbers, disclaimers, tracking.

Series numbers are fixed so that viewers sort dermnode's series the same way in every study.
"""

from __future__ import annotations

from pydicom import Dataset

from inference.models.prediction import ModelIdentity
from inference.outputs.identity import DEFAULT_UID_PREFIX, derive_uid

MANUFACTURER = "dermnode"
NOT_FOR_DIAGNOSIS = "AI-generated, not for diagnostic use"
REPORT_SERIES_NUMBER = 9100
LESION_SEG_SERIES_NUMBER = 9101
ATTENTION_SEG_SERIES_NUMBER = 9102
ATTENTION_LEVELS_SEG_SERIES_NUMBER = 9103
_LO_LIMIT = 64
#: Outputs are written in UTF-8 whatever the source used: pydicom has decoded the source's text, and
#: highdicom refuses some valid source values (e.g. "ISO_IR 6", a lone "ISO 2022 IR 87").
OUTPUT_CHARACTER_SET = "ISO_IR 192"


def series_description(model: ModelIdentity, *, kind: str, untrained: bool | None = None) -> str:
    """SeriesDescription (LO, at most 64 characters): kind, model, UNTRAINED flag and the disclaimer.

    E.g. "Lesion SEG dermnode-seg 1.0.0, AI-generated, not for diagnostic use". The disclaimer and the
    kind (which tells a reader the series apart in a PACS) always stay; when the whole does not fit,
    the model name goes first, then the version (both are in the equipment attributes anyway).
    """
    flag = " UNTRAINED" if (not model.trained if untrained is None else untrained) else ""
    tail = f"{flag}, {NOT_FOR_DIAGNOSIS}"
    for middle in (f" {model.name} {model.version}", f" {model.version}", ""):
        text = f"{kind}{middle}{tail}"
        if len(text) <= _LO_LIMIT:
            return text
    return f"{kind[: _LO_LIMIT - len(tail)]}{tail}"


def short_description(model: ModelIdentity) -> str:
    """An LO (64 characters) "<model> <version>[ UNTRAINED]; AI-generated, ..." that never cuts the flag
    or the disclaimer: the name, then the version, are left out when the whole would not fit."""
    flag = "" if model.trained else " UNTRAINED"
    for head in (f"{model.name} {model.version}{flag}", f"{model.version}{flag}", flag.strip() or "AI"):
        text = f"{head}; {NOT_FOR_DIAGNOSIS}"
        if len(text) <= _LO_LIMIT:
            return text
    return f"AI; {NOT_FOR_DIAGNOSIS}"


def lesion_tracking_uid(source: Dataset, prefix: str = DEFAULT_UID_PREFIX) -> str:
    """Tracking UID of the lesion of ``source``: shared by its SEG segment and its SR group."""
    return str(derive_uid("lesion-tracking", [str(source.SOPInstanceUID)], prefix))


def lesion_tracking_id(source: Dataset) -> str:
    """Human-readable tracking identifier of the lesion of ``source``."""
    number = source.get("InstanceNumber")
    return f"Lesion of image {number}" if number not in (None, "") else "Lesion"
