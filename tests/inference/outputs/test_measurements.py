"""ABCD features on shapes whose values can be checked by hand (inference/measurements.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk

from inference.outputs.measurements import (
    DERMOSCOPIC_COLOURS,
    asymmetry,
    border_irregularity,
    colour_features,
    max_feret_diameter,
    measure_lesion,
)


def _disc(radius: int = 40, size: int = 200) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[disk((size // 2, size // 2), radius)] = True
    return mask


def _rectangle() -> np.ndarray:
    mask = np.zeros((100, 100), dtype=bool)
    mask[20:50, 10:50] = True  # 30 rows x 40 columns
    return mask


def test_rectangle_area_diameter_and_symmetry_in_pixels() -> None:
    m = measure_lesion(_rectangle())
    assert m.unit == "pixels" and not m.calibrated
    assert m.area == 1200.0
    assert m.max_diameter == pytest.approx(50.0)  # 3-4-5 triangle over the pixel corners
    assert m.asymmetry == pytest.approx(0.0, abs=1e-9)
    # 4:3 rectangle: (2 * (30 + 40))^2 / (4 pi 1200) = 1.2998; corner-cut outline slightly shorter.
    assert m.border_irregularity == pytest.approx(140.0**2 / (4 * math.pi * 1200), rel=0.04)


def test_disc_is_compact_symmetric_and_scales_with_pixel_spacing() -> None:
    mask = _disc(40)
    pixels = measure_lesion(mask)
    assert pixels.area == pytest.approx(math.pi * 40**2, rel=0.01)
    assert pixels.max_diameter == pytest.approx(81.0, abs=1.0)
    assert pixels.asymmetry == pytest.approx(0.0, abs=0.01)
    assert pixels.border_irregularity == pytest.approx(1.0, abs=0.03)
    mm = measure_lesion(mask, pixel_spacing=(0.1, 0.1))
    assert mm.unit == "mm" and mm.calibrated
    assert mm.area == pytest.approx(pixels.area * 0.01)
    assert mm.max_diameter == pytest.approx(pixels.max_diameter * 0.1)
    assert mm.border_irregularity == pytest.approx(pixels.border_irregularity)


def test_anisotropic_spacing_uses_rows_then_columns() -> None:
    # 30 rows x 40 columns at 0.2 mm row spacing, 0.1 mm column spacing: 6 mm x 4 mm.
    assert max_feret_diameter(_rectangle(), (0.2, 0.1)) == pytest.approx(math.hypot(6.0, 4.0))


def test_an_l_shape_is_asymmetric_and_irregular() -> None:
    mask = np.zeros((100, 100), dtype=bool)
    mask[10:90, 10:30] = True
    mask[70:90, 10:90] = True
    assert asymmetry(mask) > 0.2
    assert border_irregularity(mask) > 2.0


def test_colour_count_and_variegation() -> None:
    mask = _rectangle()
    rgb = np.zeros((100, 100, 3), dtype=np.uint8)
    rgb[...] = DERMOSCOPIC_COLOURS["light brown"]
    uniform = colour_features(mask, rgb)
    assert uniform == (0.0, 1)
    rgb[20:35, 10:50] = DERMOSCOPIC_COLOURS["black"]
    rgb[35:38, 10:50] = DERMOSCOPIC_COLOURS["blue-grey"]  # 10 % of the lesion
    rgb[38:39, 10:50] = DERMOSCOPIC_COLOURS["red"]  # 3 %: below the 5 % floor
    variegation, count = colour_features(mask, rgb)
    assert count == 3
    assert 0.1 < variegation < 0.5


def test_empty_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        measure_lesion(np.zeros((10, 10), dtype=bool))
