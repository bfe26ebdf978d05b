"""Field-of-view augmentation: round/elliptic views with dark surroundings, seeded, masks follow."""

from __future__ import annotations

import torch

from inference.training.augment import (
    FIELD_OF_VIEW_AUGMENTATION,
    AugmentationSettings,
    augment,
    field_of_view,
    illumination_falloff,
)


def test_same_seed_same_augmentation() -> None:
    images = torch.rand(4, 3, 48, 64)
    a, _ = augment(images, None, torch.Generator().manual_seed(5), FIELD_OF_VIEW_AUGMENTATION)
    b, _ = augment(images, None, torch.Generator().manual_seed(5), FIELD_OF_VIEW_AUGMENTATION)
    assert torch.equal(a, b)


def test_default_settings_draw_no_field_of_view() -> None:
    """The from-scratch recipe's settings leave the new transforms off (its runs stay reproducible)."""
    s = AugmentationSettings()
    assert (s.fov_probability, s.falloff, s.gamma) == (0.0, 0.0, 0.0)
    gen = torch.Generator().manual_seed(0)
    augment(torch.rand(2, 3, 16, 16), None, gen)
    reference = torch.Generator().manual_seed(0)
    # affine (2 x 6 draws of n) + colour (brightness, gain, contrast, saturation): 9 draws of n, 1 of 3n
    for _ in range(6):
        torch.rand(2, generator=reference)
    for k in (2, 6, 2, 2):
        torch.rand(k, generator=reference)
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=reference))


def test_field_of_view_blackens_corners_keeps_centre() -> None:
    always = AugmentationSettings(fov_probability=1.0, fov_radius=(0.55, 0.9))
    fov = field_of_view(200, (48, 64), always, torch.Generator().manual_seed(1))
    assert fov.shape == (200, 1, 48, 64) and fov.min() >= 0 and fov.max() <= 1
    assert (fov[:, 0, 24, 32] == 1).all()  # the centre is always in view
    assert (fov[:, 0, 0, 0] < 0.5).float().mean() > 0.9  # corners almost always dark
    never = AugmentationSettings(fov_probability=0.0)
    assert (field_of_view(5, (48, 64), never, torch.Generator().manual_seed(1)) == 1).all()


def test_masks_are_cut_by_the_field_of_view() -> None:
    settings = AugmentationSettings(rotation=0.0, scale=(1.0, 1.0), translate=0.0, fov_probability=1.0)
    images = torch.full((8, 3, 48, 64), 0.8)
    masks = torch.ones(8, 1, 48, 64)
    out, cut = augment(images, masks, torch.Generator().manual_seed(2), settings)
    assert cut is not None
    assert (cut[:, :, 0, 0] < 0.5).all() and (out[:, :, 0, 0] < 0.1).all()
    assert (cut[:, :, 24, 32] == 1).all()


def test_zoom_range_covers_in_and_out_and_falloff_darkens_edges() -> None:
    low, high = FIELD_OF_VIEW_AUGMENTATION.scale
    assert low < 1.0 < high
    gains = illumination_falloff(50, (48, 64), 0.4, torch.Generator().manual_seed(3))
    assert (gains[:, 0, 0, 0] <= gains[:, 0, 24, 32] + 1e-6).all() and gains.min() >= 0.5
