from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureType, Lambda, NormalizeIntensity

from dermnode.kernel.errors import InferenceError
from inference.models.bundle import Normalisation
from inference.models.preprocess import (
    check_rgb,
    lesion_mask,
    lesion_probability,
    normalise_batch,
    prepare_image,
    resize_map,
    resize_rgb,
    shades_of_gray,
    stack_prepared,
)
from tests.factories import lesion_image
from tests.factories import lesion_mask as truth_mask

NORM = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), colour_constancy="shades_of_gray")


def test_shades_of_gray_removes_a_colour_cast() -> None:
    image = lesion_image(60, 80)
    cast = np.clip(image.astype(np.float32) * (1.0, 0.7, 0.5), 0, 255).astype(np.uint8)
    a, b = shades_of_gray(image).astype(float), shades_of_gray(cast).astype(float)
    ratio = lambda x: x[..., 0].mean() / x[..., 2].mean()  # noqa: E731
    assert abs(ratio(a) - ratio(b)) < 0.05 * ratio(a)
    grey = np.full((4, 4, 3), 100, np.uint8)
    assert np.array_equal(shades_of_gray(grey), grey)


def _prepared_unit_chw(image: np.ndarray, size: tuple[int, int], colour_constancy: str) -> torch.Tensor:
    prepared = prepare_image(image, size, colour_constancy)
    return torch.from_numpy(np.ascontiguousarray(prepared.transpose(2, 0, 1))).float() / 255.0


def _monai_transform(size: tuple[int, int], normalisation: Normalisation) -> Compose:
    """The same preprocessing written as a MONAI composition: the reference our batched path must match."""
    return Compose(
        [
            Lambda(partial(_prepared_unit_chw, size=size, colour_constancy=normalisation.colour_constancy)),
            NormalizeIntensity(
                subtrahend=np.asarray(normalisation.mean, dtype=np.float32).reshape(3, 1, 1),
                divisor=np.asarray(normalisation.std, dtype=np.float32).reshape(3, 1, 1),
            ),
            EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )


def test_prepare_and_transform_agree() -> None:
    image = lesion_image(150, 200)
    prepared = prepare_image(image, (72, 96), "shades_of_gray")
    assert prepared.shape == (72, 96, 3) and prepared.dtype == np.uint8
    via_batch = normalise_batch(stack_prepared([prepared]), NORM)[0]
    via_monai = _monai_transform((72, 96), NORM)(image)
    assert via_monai.shape == (3, 72, 96)
    torch.testing.assert_close(via_monai, via_batch, atol=1e-5, rtol=0)


def test_check_rgb_rejects_bad_arrays() -> None:
    with pytest.raises(InferenceError, match=r"must be a uint8 RGB array of shape \(rows, columns, 3\)"):
        check_rgb(np.zeros((10, 10), np.uint8))
    with pytest.raises(InferenceError, match=r"dtype float32"):
        check_rgb(np.zeros((10, 10, 3), np.float32))


def test_mask_postprocessing_returns_to_the_source_grid_without_shift() -> None:
    rows, cols = 150, 200
    truth = truth_mask(rows, cols)
    small = resize_map(truth.astype(np.float32), (96, 128))
    back = lesion_mask(small, (rows, cols))
    assert back.shape == (rows, cols)
    assert (back ^ truth).sum() < 0.02 * truth.sum()
    ys, xs = np.nonzero(back)
    ty, tx = np.nonzero(truth)
    assert abs(ys.mean() - ty.mean()) < 0.5 and abs(xs.mean() - tx.mean()) < 0.5


def test_largest_component_and_hole_filling() -> None:
    prob = np.zeros((20, 20), np.float32)
    prob[2:12, 2:12] = 1.0
    prob[5:8, 5:8] = 0.0  # hole
    prob[15:17, 15:17] = 1.0  # speck
    mask = lesion_mask(prob, (20, 20))
    assert mask[6, 6] and not mask[16, 16] and mask.sum() == 100
    assert lesion_mask(np.zeros((3, 3), np.float32), (3, 3)).sum() == 0


def test_lesion_probability_sigmoid_and_softmax() -> None:
    one = torch.zeros((1, 1, 2, 2))
    assert torch.allclose(lesion_probability(one), torch.full((1, 2, 2), 0.5))
    two = torch.stack([torch.zeros(2, 2), torch.full((2, 2), 100.0)])[None]
    assert torch.allclose(lesion_probability(two), torch.ones((1, 2, 2)))


def test_resize_matches_monai_resize() -> None:
    from monai.transforms import Resize

    image = lesion_image(150, 200)
    for size in ((72, 96), (96, 128)):
        chw = torch.from_numpy(image.transpose(2, 0, 1).copy()).float()
        expected = torch.as_tensor(Resize(spatial_size=size, mode="area")(chw)).round().to(torch.uint8).numpy()
        assert np.array_equal(resize_rgb(image, size), expected.transpose(1, 2, 0))


def test_main_component_prefers_the_central_lesion_over_a_larger_corner_blob() -> None:
    prob = np.zeros((60, 80), np.float32)
    prob[22:38, 32:48] = 0.9  # central lesion, 256 px
    prob[0:20, 0:20] = 0.9  # corner blob, 400 px
    mask = lesion_mask(prob, (60, 80))
    assert mask[30, 40] and not mask[5, 5]
    assert (prob[0:20, 0:20] >= 0.5).sum() > (prob[22:38, 32:48] >= 0.5).sum()  # the blob is the larger one
