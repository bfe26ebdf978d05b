from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermnode.kernel.errors import InferenceError
from inference.training.classification import threshold_for_sensitivity
from inference.training.data import Record, partition, read_ids, read_records, split_by_lesion, write_ids
from tests.inference.synthetic import write_dataset


def record(image_id: str, lesion: str | None, diagnosis: str = "nv", source: str = "S") -> Record:
    return Record(image_id, diagnosis, Path(f"{image_id}.jpg"), None, source, lesion)


def test_split_keeps_lesions_together_and_is_seeded() -> None:
    records = [record(f"I{i}", f"L{i // 3}") for i in range(60)] + [record(f"J{i}", None) for i in range(20)]
    rest, held = split_by_lesion(records, 0.25, seed=7)
    assert {r.group for r in rest}.isdisjoint({r.group for r in held})
    assert len(rest) + len(held) == 80
    again = split_by_lesion(records, 0.25, seed=7)[1]
    assert [r.image_id for r in again] == [r.image_id for r in held]
    assert [r.image_id for r in split_by_lesion(records, 0.25, seed=8)[1]] != [r.image_id for r in held]


def test_partition_refuses_a_split_that_shares_a_lesion() -> None:
    records = [record("A", "L1"), record("B", "L1"), record("C", "L2")]
    with pytest.raises(InferenceError, match=r"puts 1 lesion\(s\) on both sides"):
        partition(records, ["A"])


def test_ids_round_trip_and_labels_csv(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d", per_class=3)
    records = read_records(data)
    assert {r.diagnosis for r in records} == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    write_ids(tmp_path / "ids.txt", records[:4], "header line")
    assert read_ids(tmp_path / "ids.txt") == sorted(r.image_id for r in records[:4])
    with pytest.raises(InferenceError, match=r"does not exist; point --data"):
        read_records(tmp_path)


def test_committed_validation_split_exists() -> None:
    assert len(read_ids()) > 1000


def test_threshold_for_sensitivity_by_hand() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.99]
    positive = [True] * 10 + [False]
    # 10 positives: 9 must be at or above t → the 9th highest positive, 0.1.
    assert threshold_for_sensitivity(np.array(scores), np.array(positive), 0.9) == pytest.approx(0.1)
