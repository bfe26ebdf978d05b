"""Batched data augmentation in torch (runs on the training device): geometry shared by image and mask,
colour jitter on the image only. Random draws come from an explicit generator, so a seed fixes them."""

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
    return images.clamp(0.0, 1.0), masks
