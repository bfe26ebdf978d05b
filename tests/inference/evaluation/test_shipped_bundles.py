"""The shipped bundles reproduce the figures in their metadata / model cards on the shared validation split.

The whole split (2,268 images) takes minutes; the bundles record a fixed, evenly spaced check subset
(``dermnode evaluate --limit 300 --record``) whose figures the model cards also list, and this test
re-measures that subset. Skipped when ``../shared/data/dermoscopy`` (beside the clone) is absent or the
bundles are placeholders.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from inference.evaluation.evaluate import EvaluationOptions, evaluate
from inference.models.bundle import read_metadata
from inference.models.predict import DEFAULT_CLASSIFIER, DEFAULT_SEGMENTER
from inference.training.model_card import CHECK_SUBSET
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
TOLERANCE = 0.01

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not (DATA / "labels.csv").is_file(), reason=f"{DATA} is absent"),
]


@pytest.mark.timeout(300)
def test_shipped_bundles_reproduce_recorded_metrics(tmp_path: Path) -> None:
    classifier, segmenter = read_metadata(DEFAULT_CLASSIFIER), read_metadata(DEFAULT_SEGMENTER)
    if not (classifier.trained and segmenter.trained):
        pytest.skip("shipped bundles are untrained placeholders; nothing recorded to reproduce")
    recorded = classifier.metrics.get(CHECK_SUBSET)
    segmented = segmenter.metrics.get(CHECK_SUBSET)
    assert recorded and segmented, "no check subset recorded; run `dermnode evaluate --limit 300 --record`"
    assert recorded["limit"] <= 300
    measured = evaluate(
        EvaluationOptions(
            data=DATA, out=tmp_path, limit=recorded.get("limit"), plots=False, tta=bool(recorded.get("tta", True)),
            attention="attention_in_lesion_median" in recorded,
        )
    )
    assert measured["n_images"] == recorded["n_images"]
    for key in (
        "melanoma_auc",
        "malignant_auc",
        "balanced_accuracy",
        "ece",
        "melanoma_sensitivity",
        "melanoma_specificity",
    ):
        assert math.isclose(measured[key], recorded[key], abs_tol=TOLERANCE), key
    for key in ("attention_in_lesion_median", "attention_in_lesion_median_vignette"):
        if key in recorded:
            assert math.isclose(measured[key], recorded[key], abs_tol=0.02), key
    assert math.isclose(measured["dice_mean"], segmented["dice_mean"], abs_tol=TOLERANCE)
    assert math.isclose(measured["jaccard_mean"], segmented["jaccard_mean"], abs_tol=TOLERANCE)
