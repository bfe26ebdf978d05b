from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermnode.kernel.errors import InferenceError
from inference.training.data import read_records
from inference.training.travel import make_travel_copy
from tests.inference.synthetic import write_dataset


def test_travel_copy_keeps_the_layout_and_aligns_masks(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=2, rows=60, columns=80)
    copy = make_travel_copy(data, tmp_path / "copy", max_side=40, quality=85)
    original = {r.image_id: r for r in read_records(data)}
    packed = read_records(tmp_path / "copy")
    assert copy.images == len(packed) == len(original) and copy.masks > 0
    for record in packed:
        with Image.open(record.image_path) as im:
            assert im.size == (40, 30)
        assert record.diagnosis == original[record.image_id].diagnosis
        if record.mask_path is not None:
            small = np.asarray(Image.open(record.mask_path).convert("L")) > 0
            big_path = original[record.image_id].mask_path
            assert big_path is not None
            big = np.asarray(Image.open(big_path).convert("L")) > 127
            assert small.shape == (30, 40)
            # the mask shrinks with its image: same fraction of lesion, no flip or shift
            assert abs(small.mean() - big.mean()) < 0.05
            assert small[:, :20].sum() / max(1, small.sum()) == pytest.approx(
                big[:, :40].sum() / max(1, big.sum()), abs=0.1)
    with pytest.raises(InferenceError, match=r"already holds a labels\.csv"):
        make_travel_copy(data, tmp_path / "copy")
