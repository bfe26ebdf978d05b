"""DICOM UID rules shared by intake, the spool and the output builders (PS3.5 9.1)."""

from __future__ import annotations

import re

#: pydicom's organisational root; a site sets its own with the ``uid_prefix`` setting.
DEFAULT_UID_PREFIX = "1.2.826.0.1.3680043.8.498."

#: A UID: dot-separated runs of digits (PS3.5 9.1; leading zeros are tolerated, as senders use them).
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LENGTH = 64


def is_valid_uid(value: str) -> bool:
    """True for a syntactically valid UID of at most 64 characters (safe as a file or folder name)."""
    return bool(UID_PATTERN.match(value)) and len(value) <= MAX_UID_LENGTH
