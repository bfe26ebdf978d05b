"""Bias-corrected temperature scaling and the decision rule that calls the class."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.models.bundle import read_metadata
from inference.models.predict import Analyzer
from inference.models.prediction import decide
from inference.models.preprocess import prepare_image
from inference.training.calibration import Calibration, fit_calibration
from inference.training.classification import calibrate_bundle
from inference.training.data import Pack
from tests.factories import lesion_image
from tests.inference.predictions import make_prediction


def _sampled(n: int, temperature: float, bias: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (1 view, n, C) and labels drawn from softmax(logits / temperature + bias)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, n, len(bias), generator=g, dtype=torch.float64) * 3.0
    probs = torch.softmax(logits[0] / temperature + torch.tensor(bias, dtype=torch.float64), dim=1)
    labels = torch.multinomial(probs, 1, generator=g)[:, 0]
    return logits.float(), labels


def test_fit_recovers_the_temperature_and_biases_that_generated_the_labels() -> None:
    true_bias = [1.5, 0.0, -0.5, -1.0]
    logits, labels = _sampled(20000, 2.0, true_bias)
    fitted = fit_calibration(logits, labels)
    centred = np.asarray(true_bias) - np.mean(true_bias)
    assert fitted.temperature == pytest.approx(2.0, abs=0.1)
    np.testing.assert_allclose(fitted.logit_bias, centred, atol=0.1)
    assert sum(fitted.logit_bias) == pytest.approx(0.0, abs=1e-3)
    # decision weights exp(-bias), largest 1: the call undoes the bias, i.e. the argmax of the logits
    lowest = min(fitted.logit_bias)
    assert fitted.decision_weights == pytest.approx([math.exp(lowest - b) for b in fitted.logit_bias], rel=1e-4)
    assert max(fitted.decision_weights) == 1.0
    probs = torch.softmax(logits[0] / fitted.temperature + torch.tensor(fitted.logit_bias), dim=1).numpy()
    calls = decide(probs, fitted.decision_weights)
    assert (calls == logits[0].argmax(1).numpy()).mean() > 0.999
    assert (calls != probs.argmax(1)).any()  # the bias alone would call differently


def test_calibrated_probabilities_beat_temperature_only_on_shifted_priors() -> None:
    """Labels 70 % class 0 (as nevi are): the biases must bring the NLL well below the no-bias fit's."""
    logits, labels = _sampled(8000, 1.0, [2.5, 0.0, 0.0, 0.0], seed=1)
    fitted = fit_calibration(logits, labels)

    def nll(bias: tuple[float, ...], t: float) -> float:
        p = torch.softmax(logits[0] / t + torch.tensor(bias or (0.0,) * 4), dim=1)
        return float(-torch.log(p[torch.arange(len(labels)), labels]).mean())

    assert nll(fitted.logit_bias, fitted.temperature) < nll((), 1.0) - 0.2


def test_a_class_absent_from_the_calibration_split_stays_finite() -> None:
    logits, labels = _sampled(500, 1.0, [0.0, 0.0, 0.0])
    labels[labels == 2] = 0
    fitted = fit_calibration(logits, labels)
    assert all(math.isfinite(b) for b in fitted.logit_bias) and min(fitted.logit_bias) > -20


def test_nothing_to_fit_and_bad_shapes() -> None:
    assert fit_calibration(torch.zeros(2, 0, 7), torch.zeros(0, dtype=torch.long)) == Calibration(1.0, (), ())
    with pytest.raises(ValueError, match=r"need logits \(views, N, C\) and labels \(N,\)"):
        fit_calibration(torch.zeros(3, 7), torch.zeros(3, dtype=torch.long))


def test_decision_weights_decide_the_called_class() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7]])
    assert decide(probs).tolist() == [0, 2]
    assert decide(probs, (0.1, 1.0, 1.0)).tolist() == [1, 2]
    prediction = make_prediction(probabilities=(0.02, 0.03, 0.05, 0.01, 0.2, 0.67, 0.02))
    assert prediction.predicted.key == "nv"
    weighted = dataclasses.replace(prediction, decision_weights=(1.0, 1.0, 1.0, 1.0, 1.0, 0.1, 1.0))
    assert weighted.predicted.key == "mel"  # 0.2 > 0.067
    assert weighted.ranked(1)[0][0].key == "nv"  # the differential stays ordered by probability
    with pytest.raises(ValueError, match=r"2 decision weights for 7 labels"):
        dataclasses.replace(prediction, decision_weights=(1.0, 2.0))


def test_calibrate_bundle_rewrites_the_bundle_it_is_given(classifier_copy: Path) -> None:
    """calibrate_bundle (the last step of `dermnode train classify`) fits, thresholds and rewrites metadata."""
    rng = np.random.default_rng(0)
    rows, columns = read_metadata(classifier_copy).input_size
    images = [lesion_image(150, 200, seed=i) for i in range(28)]
    packed = np.stack([prepare_image(image, (rows, columns), "shades_of_gray") for image in images])  # as packed
    labels = np.arange(28, dtype=np.int64) % 7
    pack = Pack(tuple(f"img{i}" for i in range(28)), packed, rng.permutation(labels), None)
    returned = calibrate_bundle(classifier_copy, pack, pack)
    meta = read_metadata(classifier_copy)
    assert meta == returned
    assert len(meta.logit_bias) == len(meta.decision_weights) == 7 and max(meta.decision_weights) == 1.0
    assert meta.training["calibration"].startswith("temperature + per-class logit bias fitted by NLL")
    assert "(28 images)" in meta.training["calibration"]
    mel = Analyzer.from_bundles(classifier_copy).classify(images)[:, meta.label_index("mel")]
    is_mel = pack.labels == meta.label_index("mel")
    assert (mel[is_mel] >= meta.operating_threshold).mean() >= 0.9  # the threshold keeps sensitivity >= 0.90
    assert "bias-corrected temperature scaling" in (classifier_copy / "docs" / "README.md").read_text()
