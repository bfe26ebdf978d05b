"""Deterministic DICOM UIDs: the same sources, model version and output kind give the same UID.

A retried task or a resent study therefore replaces its earlier outputs instead of duplicating them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import UID, generate_uid

# pydicom's root; a site can pass its own organisational root instead.
DEFAULT_UID_PREFIX = "1.2.826.0.1.3680043.8.498."


def derive_uid(kind: str, parts: Iterable[str], prefix: str = DEFAULT_UID_PREFIX) -> UID:
    """Return a UID that depends only on ``kind`` (e.g. "seg-series") and the ordered ``parts``."""
    material = [f"dermnode:{kind}", *parts]
    if len(material) == 1:
        raise ValueError(f"derive_uid({kind!r}) needs at least one part to derive from")
    return generate_uid(prefix=prefix, entropy_srcs=material)
