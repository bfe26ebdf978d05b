"""ABCD dermoscopy features of a segmented lesion: pure numpy / scikit-image functions.

A (asymmetry), B (border irregularity), C (colour variegation) and D (diameter), plus the area, from
the boolean lesion mask in the source pixel grid and, for colour, the RGB image. Lengths and areas are
in millimetres when the source gives Pixel Spacing (row spacing, column spacing), else in pixels.
These are descriptive image features for the report, not validated clinical scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

# Nominal sRGB prototypes of the six dermoscopic colours of the ABCD rule (white, red, light brown,
# dark brown, blue-grey, black). Approximate values for a descriptive count, not a clinical standard.
DERMOSCOPIC_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (235, 230, 225),
    "red": (190, 60, 60),
    "light brown": (185, 130, 90),
    "dark brown": (105, 60, 40),
    "blue-grey": (110, 125, 150),
    "black": (35, 30, 30),
}
COLOUR_MIN_FRACTION = 0.05
COLOUR_SAMPLE_LIMIT = 250_000


@dataclass(frozen=True)
class LesionMeasurements:
    """ABCD features of one lesion; ``unit`` is "mm" or "pixels" for lengths (areas are its square)."""

    area: float
    max_diameter: float
    asymmetry: float
    border_irregularity: float
    colour_variegation: float
    colour_count: int
    unit: str

    @property
    def calibrated(self) -> bool:
        """True when lengths and areas are physical (millimetres)."""
        return self.unit == "mm"


def measure_lesion(
    mask: npt.NDArray[np.bool_],
    rgb: npt.NDArray[np.uint8] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
) -> LesionMeasurements:
    """All ABCD features of the lesion ``mask``; colour features are 0 when ``rgb`` is None.

    ``pixel_spacing`` is DICOM Pixel Spacing: (spacing between rows, spacing between columns) in mm.
    Raises ValueError for an empty mask or inconsistent shapes.
    """
    _check_mask(mask)
    spacing = (1.0, 1.0) if pixel_spacing is None else (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if spacing[0] <= 0 or spacing[1] <= 0:
        raise ValueError(f"Argument 'pixel_spacing' must be positive, got {pixel_spacing}.")
    variegation, count = (0.0, 0) if rgb is None else colour_features(mask, rgb)
    return LesionMeasurements(
        area=area(mask, spacing),
        max_diameter=max_feret_diameter(mask, spacing),
        asymmetry=asymmetry(mask, spacing),
        border_irregularity=border_irregularity(mask, spacing),
        colour_variegation=variegation,
        colour_count=count,
        unit="pixels" if pixel_spacing is None else "mm",
    )


def area(mask: npt.NDArray[np.bool_], spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Number of lesion pixels times the area of one pixel."""
    return float(np.count_nonzero(mask)) * spacing[0] * spacing[1]


def max_feret_diameter(mask: npt.NDArray[np.bool_], spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Largest distance between two points of the lesion, pixels taken as squares (their corners).

    An h x w pixel rectangle gives sqrt(h^2 + w^2) pixel lengths exactly.
    """
    _check_mask(mask)
    # The hull of the lesion is the hull of its boundary pixels' corners, in physical units (row, column).
    rows, cols = np.nonzero(mask & ~ndimage.binary_erosion(mask))
    corners = np.concatenate([np.stack([rows + dr, cols + dc], axis=1) for dr in (0, 1) for dc in (0, 1)]).astype(
        np.float64
    ) * np.asarray(spacing)
    corners = np.unique(corners, axis=0)
    try:
        hull = corners[ConvexHull(corners).vertices]
    except QhullError:  # all corners collinear cannot happen for whole pixels, but stay safe
        hull = corners
    diffs = hull[:, np.newaxis, :] - hull[np.newaxis, :, :]
    return float(np.sqrt((diffs**2).sum(axis=2)).max())


def asymmetry(mask: npt.NDArray[np.bool_], spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Mean mismatch of the lesion with its mirror image across each of its two principal axes.

    For each axis through the centroid, the fraction of lesion pixels whose reflection falls outside
    the lesion; 0 for a shape symmetric about both axes (disc, ellipse, rectangle), up to 1.
    """
    _check_mask(mask)
    rows, cols = np.nonzero(mask)
    points = np.stack([(rows + 0.5) * spacing[0], (cols + 0.5) * spacing[1]], axis=1)
    centroid = points.mean(axis=0)
    centred = points - centroid
    if len(points) < 2:
        return 0.0
    _, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    ratios = []
    for k in range(2):
        normal = vectors[:, k]  # reflect across the axis perpendicular to this eigenvector
        mirrored = centred - 2.0 * np.outer(centred @ normal, normal) + centroid
        r = np.floor(mirrored[:, 0] / spacing[0] + 1e-9).astype(int)
        c = np.floor(mirrored[:, 1] / spacing[1] + 1e-9).astype(int)
        inside = (r >= 0) & (r < mask.shape[0]) & (c >= 0) & (c < mask.shape[1])
        hit = np.zeros(len(points), dtype=bool)
        hit[inside] = mask[r[inside], c[inside]]
        ratios.append(1.0 - float(hit.mean()))
    return float(np.mean(ratios))


def perimeter(mask: npt.NDArray[np.bool_], spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Length of the lesion's outline, in length units, over all its connected components.

    The outline is the 0.5 iso-line of the mask smoothed by a 1-pixel Douglas-Peucker simplification,
    which removes most of the staircase that makes digital outlines too long.
    """
    _check_mask(mask)
    total = 0.0
    for raw in measure.find_contours(np.pad(mask.astype(np.float32), 1), 0.5):
        contour = measure.approximate_polygon(raw, tolerance=1.0)
        steps = np.diff(contour, axis=0) * np.asarray(spacing)
        total += float(np.sqrt((steps**2).sum(axis=1)).sum())
    return total


def border_irregularity(mask: npt.NDArray[np.bool_], spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Compactness index perimeter^2 / (4 pi area): about 1 for a disc, larger for ragged borders."""
    return perimeter(mask, spacing) ** 2 / (4.0 * np.pi * area(mask, spacing))


def colour_features(mask: npt.NDArray[np.bool_], rgb: npt.NDArray[np.uint8]) -> tuple[float, int]:
    """(variegation, colour count) of the lesion.

    Variegation is the mean standard deviation of the R, G and B values inside the lesion divided by
    255 (0 for a uniform lesion). The count is how many of the six dermoscopic colours
    (``DERMOSCOPIC_COLOURS``, nearest prototype) cover at least 5 % of the lesion.
    """
    _check_mask(mask)
    if rgb.shape != (*mask.shape, 3):
        raise ValueError(f"Argument 'rgb' has shape {rgb.shape}, expected {(*mask.shape, 3)} to match the mask.")
    pixels = rgb[mask]
    if len(pixels) > COLOUR_SAMPLE_LIMIT:  # a regular subsample keeps memory bounded on large images
        pixels = pixels[:: -(-len(pixels) // COLOUR_SAMPLE_LIMIT)]
    samples = pixels.astype(np.float32)
    variegation = float(samples.std(axis=0, dtype=np.float64).mean() / 255.0)
    prototypes = np.asarray(list(DERMOSCOPIC_COLOURS.values()), dtype=np.float32)
    distances = np.stack([((samples - p) ** 2).sum(axis=1) for p in prototypes], axis=1)
    nearest = np.argmin(distances, axis=1)
    shares = np.bincount(nearest, minlength=len(prototypes)) / len(samples)
    return variegation, int(np.count_nonzero(shares >= COLOUR_MIN_FRACTION))


def _check_mask(mask: npt.NDArray[np.bool_]) -> None:
    if mask.ndim != 2:
        raise ValueError(f"Argument 'mask' must be 2-D (rows, columns), got shape {mask.shape}.")
    if not mask.any():
        raise ValueError("Argument 'mask' is empty: there is no lesion to measure.")
