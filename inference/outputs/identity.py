"""Deterministic DICOM UIDs: the same sources, model version and output kind give the same UID.

A retried task or a resent study therefore replaces its earlier outputs instead of duplicating them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import UID, generate_uid

from dermnode.kernel.uids import DEFAULT_UID_PREFIX


def derive_uid(kind: str, parts: Iterable[str], prefix: str = DEFAULT_UID_PREFIX) -> UID:
    """Return a UID that depends only on ``kind`` (e.g. "seg-series") and the ordered ``parts``."""
    material = [f"dermnode:{kind}", *parts]
    if len(material) == 1:
        raise ValueError(f"derive_uid({kind!r}) needs at least one part to derive from")
    return generate_uid(prefix=prefix, entropy_srcs=material)
