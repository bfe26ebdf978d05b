"""Batched data augmentation in torch (runs on the training device): geometry shared by image and mask,
colour jitter on the image only. Random draws come from an explicit generator, so a seed fixes them.

Against acquisition shortcuts (DESIGN.md, "Field-of-view shortcut"), :data:`FIELD_OF_VIEW_AUGMENTATION`
adds random circular or elliptic fields of view with black surroundings (black corners), illumination
fall-off and gamma, and a scale range that zooms in (crops) as well as out. Those transforms are off in
the default settings, so the from-scratch recipe draws exactly what it drew before."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentationSettings:
    """Ranges of the random transforms (rotation in degrees, others as factors)."""

    rotation: float = 180.0
    scale: tuple[float, float] = (0.85, 1.2)
    translate: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    channel_gain: float = 0.06
    #: Share of images given a random circular/elliptic field of view with dark surroundings.
    fov_probability: float = 0.0
    #: Circle radius range as fractions of the half-diagonal (ellipses: semi-axes ≈ this × the half-sides).
    fov_radius: tuple[float, float] = (0.55, 0.95)
    #: Largest darkening at the corners by radial illumination fall-off (0: none).
    falloff: float = 0.0
    #: Gamma is exp(U(-gamma, gamma)) (0: none).
    gamma: float = 0.0


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def affine_grid(n: int, size: tuple[int, int], s: AugmentationSettings, gen: torch.Generator) -> torch.Tensor:
    """A sampling grid (N, H, W, 2) for random rotation, scale, flips and shift, correct for non-square images."""
    h, w = size
    angle = _uniform(n, -s.rotation, s.rotation, gen) * math.pi / 180.0
    scale = torch.exp(_uniform(n, math.log(s.scale[0]), math.log(s.scale[1]), gen))
    flip_x = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    tx, ty = (_uniform(n, -s.translate, s.translate, gen) * 2 for _ in range(2))
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # Rotation in pixel units: normalised x spans w/2 pixels, y spans h/2, so rescale the off-diagonals.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip_x
    theta[:, 0, 1] = -sin * (h / w) * flip_y
    theta[:, 1, 0] = sin * (w / h) * flip_x
    theta[:, 1, 1] = cos * flip_y
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    return F.affine_grid(theta, [n, 1, h, w], align_corners=False)


def augment(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    gen: torch.Generator,
    settings: AugmentationSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """images: float (N, 3, H, W) in 0..1; masks: float (N, 1, H, W) or None. Returns augmented copies."""
    s = settings or AugmentationSettings()
    n, _, h, w = images.shape
    grid = affine_grid(n, (h, w), s, gen).to(images.device)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if masks is not None:
        masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def factor(spread: float, *shape: int) -> torch.Tensor:
        return _uniform(math.prod(shape), 1 - spread, 1 + spread, gen).view(*shape).to(images.device)

    images = images * factor(s.brightness, n, 1, 1, 1) * factor(s.channel_gain, n, 3, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factor(s.contrast, n, 1, 1, 1) + mean
    grey = images.mean(dim=1, keepdim=True)
    images = (images - grey) * factor(s.saturation, n, 1, 1, 1) + grey
    images = images.clamp(0.0, 1.0)
    if s.gamma > 0:
        images = images.clamp_min(1e-6) ** torch.exp(_uniform(n, -s.gamma, s.gamma, gen)).view(n, 1, 1, 1).to(
            images.device
        )
    if s.falloff > 0:
        images = images * illumination_falloff(n, (h, w), s.falloff, gen).to(images.device)
    if s.fov_probability > 0:
        fov = field_of_view(n, (h, w), s, gen).to(images.device)
        floor = _uniform(n, 0.0, 0.06, gen).view(n, 1, 1, 1).to(images.device)
        images = images * fov + floor * (1 - fov)
        if masks is not None:
            masks = masks * fov
    return images, masks


def _centred_coordinates(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (rows, columns) relative to the image centre, in pixels, shape (1, H, W)."""
    h, w = size
    y = torch.arange(h, dtype=torch.float32).view(1, h, 1) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float32).view(1, 1, w) - (w - 1) / 2
    return y, x


def field_of_view(n: int, size: tuple[int, int], s: AugmentationSettings, gen: torch.Generator) -> torch.Tensor:
    """(N, 1, H, W) masks in [0, 1]: 1 inside a random circle or ellipse (a dermoscope's round view), 0 outside.

    With probability ``s.fov_probability`` an image gets a field: a circle (half of them) of radius
    U(fov_radius) × half-diagonal, or an ellipse with semi-axes U(fov_radius) × √2 × the half-sides, its
    centre shifted up to 8 % of each side; the edge is a 2-pixel ramp. Others get all ones.
    """
    h, w = size
    y, x = _centred_coordinates(size)
    low, high = s.fov_radius
    half_diagonal = math.hypot(h, w) / 2
    circle = torch.rand(n, generator=gen) < 0.5
    r_circle = _uniform(n, low, high, gen) * half_diagonal
    ry = torch.where(circle, r_circle, _uniform(n, low, high, gen) * math.sqrt(2) * h / 2)
    rx = torch.where(circle, r_circle, _uniform(n, low, high, gen) * math.sqrt(2) * w / 2)
    cy = _uniform(n, -0.08, 0.08, gen) * h
    cx = _uniform(n, -0.08, 0.08, gen) * w
    dy = (y - cy.view(n, 1, 1)) / ry.view(n, 1, 1)
    dx = (x - cx.view(n, 1, 1)) / rx.view(n, 1, 1)
    # Signed distance to the edge in pixels, approximately: (1 - ρ) × the smaller semi-axis.
    rho = torch.sqrt(dy**2 + dx**2)
    inside = ((1 - rho) * torch.minimum(rx, ry).view(n, 1, 1) / 2 + 0.5).clamp(0.0, 1.0)
    applied = (torch.rand(n, generator=gen) < s.fov_probability).view(n, 1, 1)
    return torch.where(applied, inside, torch.ones_like(inside))[:, None]


def illumination_falloff(n: int, size: tuple[int, int], strength: float, gen: torch.Generator) -> torch.Tensor:
    """(N, 1, H, W) gains 1 − U(0, strength) × (r / half-diagonal)², r from a slightly shifted centre."""
    h, w = size
    y, x = _centred_coordinates(size)
    cy = _uniform(n, -0.1, 0.1, gen).view(n, 1, 1) * h
    cx = _uniform(n, -0.1, 0.1, gen).view(n, 1, 1) * w
    r2 = ((y - cy) ** 2 + (x - cx) ** 2) / (math.hypot(h, w) / 2) ** 2
    return (1 - _uniform(n, 0.0, strength, gen).view(n, 1, 1) * r2).clamp(0.0, 1.0)[:, None]


#: The pretrained recipes' augmentation: rotation by any angle, zoom from 0.7× (more skin) to 1.6× (a crop),
#: stronger colour/illumination jitter, and random fields of view on 40 % of images.
FIELD_OF_VIEW_AUGMENTATION = AugmentationSettings(
    rotation=180.0,
    scale=(0.7, 1.6),
    translate=0.12,
    brightness=0.2,
    contrast=0.2,
    saturation=0.2,
    channel_gain=0.08,
    fov_probability=0.4,
    fov_radius=(0.55, 0.95),
    falloff=0.35,
    gamma=0.2,
)
