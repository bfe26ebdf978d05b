"""Lesion outline for SCOORD POLYLINE in DICOM image coordinates (inference/contour.py)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon2mask

from inference.outputs.contour import lesion_outline, polygon_area
from tests.factories import lesion_mask


def test_rectangle_outline_lies_on_pixel_edges() -> None:
    mask = np.zeros((30, 50), dtype=bool)
    mask[10:20, 20:40] = True  # rows 10..19, columns 20..39
    points = lesion_outline(mask)
    assert np.array_equal(points[0], points[-1])
    # Column 20's left edge is x = 20.0, column 39's right edge x = 40.0 (centre of pixel 0 = 0.5).
    assert points[:, 0].min() == 20.0 and points[:, 0].max() == 40.0
    assert points[:, 1].min() == 10.0 and points[:, 1].max() == 20.0
    assert polygon_area(points) == pytest.approx(200.0 - 4 * 0.125)


def test_single_pixel_outline_is_a_diamond_inside_that_pixel() -> None:
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 2] = True  # row 1, column 2: the square [2, 3] x [1, 2]
    points = lesion_outline(mask)
    assert {tuple(p) for p in points.tolist()} == {(2.5, 1.0), (3.0, 1.5), (2.5, 2.0), (2.0, 1.5)}


def test_outline_rasterises_back_to_the_mask_without_shift() -> None:
    mask = lesion_mask(96, 128)
    points = lesion_outline(mask)
    assert len(points) <= 128
    # polygon2mask samples pixel centres at integer (row, column): move DICOM coordinates by -0.5.
    back = polygon2mask(mask.shape, np.stack([points[:, 1] - 0.5, points[:, 0] - 0.5], axis=1))
    iou = np.logical_and(back, mask).sum() / np.logical_or(back, mask).sum()
    assert iou > 0.97
    assert abs(polygon_area(points) - mask.sum()) / mask.sum() < 0.02


def test_point_budget_is_respected_and_border_lesions_stay_closed() -> None:
    mask = np.zeros((200, 200), dtype=bool)
    rr, cc = np.mgrid[0:200, 0:200]
    mask[(rr - 100) ** 2 + (cc + 10) ** 2 <= 90**2] = True  # touches the left border
    points = lesion_outline(mask, max_points=16)
    assert len(points) <= 16
    assert np.array_equal(points[0], points[-1])
    assert points[:, 0].min() == 0.0


def test_empty_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        lesion_outline(np.zeros((4, 4), dtype=bool))
