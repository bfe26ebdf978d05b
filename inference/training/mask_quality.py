"""Checks of ground-truth lesion masks: some HAM10000 masks are inverted (they mark the skin, not the lesion).

Hundreds of the HAM10000 segmentations in one id range (ISIC_0024316 … ISIC_0024715) are stored inverted.
A lesion rarely covers most of the image border, and when it does (a lesion larger than the view) the
skin left over lies at the border, in the corners. A mask whose "lesion" covers most of the border while
its remainder lies inside, away from the border, is taken as inverted: the remainder is the real lesion. Training skips
such masks (and logs them); evaluation counts them and reports Dice with and without them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Share of the border ring (outer 5 % of each side) marked lesion above which a mask is suspicious.
BORDER_SHARE = 0.5
#: Largest share of the remainder's pixels on the border ring for the remainder to count as enclosed.
ENCLOSED_SHARE = 0.05


def inverted_mask(mask: npt.NDArray[np.generic]) -> bool:
    """Whether one ``mask`` (rows, columns; bool or 0..255) looks inverted."""
    return bool(inverted_masks(np.asarray(mask)[None])[0])


def inverted_masks(masks: npt.NDArray[np.generic]) -> npt.NDArray[np.bool_]:
    """Which of the (N, H, W) masks (bool or 0..255) look inverted."""
    raw = np.asarray(masks)
    binary: npt.NDArray[np.bool_] = raw.astype(bool) if raw.dtype == bool else np.asarray(raw.astype(np.float32) > 127)
    _, h, w = binary.shape
    by, bx = max(1, h // 20), max(1, w // 20)
    ring = np.ones((h, w), bool)
    ring[by : h - by, bx : w - bx] = False
    edge = binary[:, ring].mean(axis=1)
    rest = ~binary
    rest_on_ring = rest[:, ring].sum(axis=1) / np.maximum(rest.sum(axis=(1, 2)), 1)
    has_both = binary.any(axis=(1, 2)) & rest.any(axis=(1, 2))
    return np.asarray((edge > BORDER_SHARE) & (rest_on_ring < ENCLOSED_SHARE) & has_both, dtype=bool)
