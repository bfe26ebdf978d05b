"""Inverted ground-truth masks (skin marked instead of the lesion) are recognised; large lesions are not."""

from __future__ import annotations

import numpy as np

from inference.training.mask_quality import inverted_mask, inverted_masks


def disc(rows: int, columns: int, radius: float) -> np.ndarray:
    y, x = np.ogrid[:rows, :columns]
    return np.hypot(y - (rows - 1) / 2, x - (columns - 1) / 2) <= radius


def test_inverted_central_lesion_is_flagged() -> None:
    lesion = disc(150, 200, 40)
    assert not inverted_mask(lesion)
    assert inverted_mask(~lesion)
    assert inverted_mask(np.where(~lesion, 255, 0).astype(np.uint8))


def test_lesion_larger_than_the_view_is_not_flagged() -> None:
    """Skin left only in the corners: the lesion covers the border, but the remainder is on it."""
    assert not inverted_mask(disc(150, 200, 115))


def test_empty_and_full_masks_are_not_flagged() -> None:
    masks = np.stack([np.zeros((30, 40), bool), np.ones((30, 40), bool)])
    assert not inverted_masks(masks).any()
