"""The lesion outline as a closed polyline for an SR SCOORD POLYLINE (PS3.3 C.18.6.1.2).

Coordinates are (column, row) image-relative positions with sub-pixel resolution, as SCOORD Graphic
Data requires: (0.0, 0.0) is the top left corner of the top left pixel, (0.5, 0.5) its centre, and
(Columns, Rows) the bottom right corner of the bottom right pixel. The outline is the 0.5 iso-line of
the mask (marching squares), which runs through the midpoints of the edges between lesion and
background pixel centres, i.e. along the pixel boundaries of the mask with the corners cut.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage import measure

DEFAULT_MAX_POINTS = 128


def lesion_outline(
    mask: npt.NDArray[np.bool_], *, max_points: int = DEFAULT_MAX_POINTS, tolerance: float = 0.25
) -> npt.NDArray[np.float32]:
    """Closed outline of the largest connected region of ``mask`` as float32 (N, 2) (column, row).

    The first and last points are equal (a closed POLYLINE). The contour is simplified with the
    Douglas-Peucker ``tolerance`` (in pixels), raised until at most ``max_points`` points remain.
    Raises ValueError when the mask is not 2-D or is empty.
    """
    if mask.ndim != 2:
        raise ValueError(f"Argument 'mask' must be 2-D (rows, columns), got shape {mask.shape}.")
    if max_points < 4:
        raise ValueError(f"Argument 'max_points' must be at least 4, got {max_points}.")
    if not mask.any():
        raise ValueError("Argument 'mask' is empty: there is no lesion to outline.")
    # Pad so that regions touching the image border still give closed contours.
    padded = np.pad(mask.astype(np.float32), 1)
    contours = measure.find_contours(padded, 0.5)
    outline = max(contours, key=_enclosed_area)  # (row, column) in padded pixel-centre indices
    simplified = measure.approximate_polygon(outline, tolerance=tolerance)
    while len(simplified) > max_points:
        tolerance *= 1.5
        simplified = measure.approximate_polygon(outline, tolerance=tolerance)
    # Padded index i is pixel i - 1, whose centre is at DICOM coordinate (i - 1) + 0.5.
    rows = simplified[:, 0] - 0.5
    columns = simplified[:, 1] - 0.5
    points = np.stack([columns, rows], axis=1)
    if not np.array_equal(points[0], points[-1]):
        points = np.vstack([points, points[:1]])
    height, width = mask.shape
    points[:, 0] = np.clip(points[:, 0], 0.0, float(width))
    points[:, 1] = np.clip(points[:, 1], 0.0, float(height))
    return points.astype(np.float32)


def polygon_area(points: npt.NDArray[np.floating]) -> float:
    """Area enclosed by a closed polyline of (x, y) points (shoelace formula), in squared units."""
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _enclosed_area(contour: npt.NDArray[np.floating]) -> float:
    return polygon_area(contour[:, ::-1])
