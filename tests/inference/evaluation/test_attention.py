"""Attention-in-lesion share and the artificial circular vignette."""

from __future__ import annotations

import numpy as np
import pytest

from inference.evaluation.attention import attention_share, circular_vignette, median_or_nan


def test_share_of_mass_inside_the_mask() -> None:
    lesion = np.zeros((4, 4), bool)
    lesion[:2] = True
    attention = np.zeros((4, 4), np.float32)
    attention[0, 0], attention[3, 3] = 3.0, 1.0
    assert attention_share(attention, lesion) == pytest.approx(0.75)
    assert attention_share(np.zeros((4, 4)), lesion) is None
    with pytest.raises(ValueError, match="same shape"):
        attention_share(attention, lesion[:2])


def test_vignette_blackens_corners_only() -> None:
    image = np.full((150, 200, 3), 200, np.uint8)
    out = circular_vignette(image)
    assert (out[0, 0] == 0).all() and (out[149, 199] == 0).all()
    assert (out[75, 100] == 200).all() and (out[75, 2] == 200).all()
    assert (image == 200).all()  # the input is not modified


def test_median_skips_missing() -> None:
    assert median_or_nan([None, 0.2, 0.6, None]) == pytest.approx(0.4)
    assert np.isnan(median_or_nan([None]))
