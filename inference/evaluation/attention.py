"""Attention-in-lesion: how much of the classifier's Grad-CAM mass lies inside the lesion mask.

A classifier that decides from the lesion puts most of its Grad-CAM mass on it; one that learned an
acquisition shortcut (DESIGN.md, "Field-of-view shortcut": black corners of a round dermoscope view) puts
it on the corners. The measure is taken on the plain image and again with an artificial circular black
vignette (:func:`circular_vignette`), which must not pull the attention off the lesion.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: The vignette's circle is centred with a radius of half the image width: a landscape image keeps its
#: full width across the middle, loses its top and bottom edges a little, and its corners go black.
VIGNETTE_RADIUS_OF_WIDTH = 0.5


def attention_share(attention: npt.NDArray[np.floating], lesion: npt.NDArray[np.bool_]) -> float | None:
    """Share of the attention map's mass inside ``lesion`` (same shape); None when the map has no mass."""
    if attention.shape != lesion.shape:
        raise ValueError(f"attention {attention.shape} and lesion mask {lesion.shape} must have the same shape")
    weights = np.clip(attention.astype(np.float64), 0.0, None)
    total = float(weights.sum())
    if total <= 0.0:
        return None
    return float(weights[lesion].sum() / total)


def circular_vignette(
    image: npt.NDArray[np.uint8], radius_of_width: float = VIGNETTE_RADIUS_OF_WIDTH
) -> npt.NDArray[np.uint8]:
    """A copy of an RGB uint8 image, black outside a centred circle of radius ``radius_of_width`` × width."""
    if radius_of_width <= 0:
        raise ValueError(f"radius_of_width must be positive, got {radius_of_width}")
    h, w = image.shape[:2]
    y = np.arange(h, dtype=np.float64)[:, None] - (h - 1) / 2
    x = np.arange(w, dtype=np.float64)[None, :] - (w - 1) / 2
    outside = np.hypot(y, x) > radius_of_width * w
    out = image.copy()
    out[outside] = 0
    return out


def median_or_nan(values: list[float | None]) -> float:
    """Median of the non-missing values (nan when there are none)."""
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else float("nan")
