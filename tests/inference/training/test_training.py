"""Tiny end-to-end runs: train both bundles on synthetic images, resume, then evaluate with the Analyzer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from dermnode.cli.models import main
from inference.models.bundle import WEIGHTS_FILE, load_bundle, read_metadata
from tests.inference.synthetic import write_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))


def train_args(data: Path, kind: str, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "train",
        kind,
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--device",
        "cpu",
        "--seed",
        "3",
        "--batch-size",
        "8",
        "--image-size",
        "64",
        "--cache",
        str(out.parent / "pack"),
        "--checkpoint",
        str(out.parent / f"{kind}.pt"),
        "--validation-ids",
        str(data / "validation_ids.txt"),
        "--no-progress",
        *extra,
    ]


def test_train_resume_evaluate(data: Path, tmp_path: Path) -> None:
    classifier, segmenter = tmp_path / "a" / "classifier", tmp_path / "a" / "segmenter"
    assert main(train_args(data, "classify", classifier, 2)) == 0
    assert main(train_args(data, "segment", segmenter, 2)) == 0
    meta = read_metadata(classifier)
    assert meta.trained and meta.version == "1.0.0" and meta.training["epochs"] == 2
    assert 0.0 <= meta.operating_threshold <= 1.0
    load_bundle(segmenter)

    # Same run stopped after one epoch by its time budget, then resumed: identical weights on CPU.
    resumed = tmp_path / "b" / "classifier"
    assert main(train_args(data, "classify", resumed, 2, "--max-minutes", "0.00001")) == 0
    assert read_metadata(resumed).training["epochs"] == 1
    assert main(train_args(data, "classify", resumed, 2, "--resume")) == 0
    a, b = torch.load(classifier / WEIGHTS_FILE), torch.load(resumed / WEIGHTS_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Calibration after training, as deterministic as the weights. These few synthetic lesions leave the
    # calibration split empty, which the bundle says (fit_calibration itself: test_calibration.py).
    assert meta.training["calibration"].startswith("none: the calibration split of the training lesions is empty")
    assert (meta.temperature, meta.logit_bias, meta.decision_weights) == (1.0, (), ())
    again = read_metadata(resumed)
    assert (again.temperature, again.logit_bias, again.operating_threshold) == (
        meta.temperature,
        meta.logit_bias,
        meta.operating_threshold,
    )

    report = tmp_path / "report"
    args = [
        "evaluate",
        "--data",
        str(data),
        "--classifier",
        str(classifier),
        "--segmenter",
        str(segmenter),
        "--out",
        str(report),
        "--validation-ids",
        str(data / "validation_ids.txt"),
        "--record",
    ]
    assert main(args) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    for key in (
        "n_images",
        "melanoma_auc",
        "malignant_auc",
        "balanced_accuracy",
        "melanoma_sensitivity",
        "melanoma_specificity",
        "ece",
        "dice_mean",
        "jaccard_mean",
        "by_source",
    ):
        assert key in metrics
    assert metrics["n_images"] == 10 and set(metrics["by_source"]) == {"SYN-A", "SYN-B"}
    for plot in ("roc.png", "confusion_matrix.png", "reliability.png", "worst_segmentations.png"):
        assert (report / plot).stat().st_size > 1000
    recorded = read_metadata(classifier).metrics
    assert recorded["n_images"] == 10 and recorded["melanoma_auc"] == metrics["melanoma_auc"]
    assert read_metadata(segmenter).metrics["dice_mean"] == metrics["dice_mean"]
    assert "Measured by" in (classifier / "docs" / "README.md").read_text()

    # A --limit evaluation is the check subset: stored beside the headline figures, listed in the card,
    # and kept when the whole split is recorded again.
    assert main([*args[:-1], "--out", str(tmp_path / "subset"), "--limit", "4", "--no-plots", "--record"]) == 0
    after = read_metadata(classifier).metrics
    assert after["n_images"] == 10 and after["check_subset"]["n_images"] == 4
    assert after["check_subset"]["limit"] == 4
    assert read_metadata(segmenter).metrics["check_subset"]["n_images"] == 4
    card = (classifier / "docs" / "README.md").read_text()
    assert "Check subset" in card and "--limit 4" in card
    assert main([*args, "--no-plots"]) == 0
    assert read_metadata(classifier).metrics["check_subset"]["n_images"] == 4
    # No machine paths: the recorded commands and data folder are relative.
    for bundle in (classifier, segmenter):
        text = (bundle / "configs" / "metadata.json").read_text() + (bundle / "docs" / "README.md").read_text()
        assert not re.search(r"(?<![\w.])/(tmp|work|home|root)/", text), bundle
