"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.evaluation.metrics import (
    balanced_accuracy,
    confusion_matrix,
    dice,
    expected_calibration_error,
    jaccard,
    reliability_bins,
    roc_auc,
    roc_curve,
    sensitivity_specificity,
)


def test_auc_by_hand() -> None:
    # positives 0.8, 0.4; negatives 0.6, 0.2, 0.1 → pairs won: (0.8 beats 3) + (0.4 beats 2) = 5 of 6.
    assert roc_auc([0.8, 0.4, 0.6, 0.2, 0.1], [1, 1, 0, 0, 0]) == pytest.approx(5 / 6)
    # a tie between a positive and a negative counts one half: (1 + 0.5) / 2.
    assert roc_auc([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.75)
    assert math.isnan(roc_auc([0.1, 0.2], [0, 0]))


def test_roc_curve_by_hand() -> None:
    fpr, tpr, thresholds = roc_curve([0.9, 0.6, 0.3], [1, 0, 1])
    assert thresholds[0] == np.inf
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(fpr, [0, 0, 1.0, 1.0])


def test_sensitivity_specificity_by_hand() -> None:
    sens, spec = sensitivity_specificity([0.9, 0.4, 0.6, 0.2], [1, 1, 0, 0], threshold=0.5)
    assert (sens, spec) == (0.5, 0.5)
    sens, spec = sensitivity_specificity([0.9, 0.4, 0.6, 0.2], [1, 1, 0, 0], threshold=0.4)
    assert (sens, spec) == (1.0, 0.5)


def test_balanced_accuracy_and_confusion_by_hand() -> None:
    truth = [0, 0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 0, 1, 1, 0, 2]
    m = confusion_matrix(truth, predicted, 4)
    assert m.tolist() == [[3, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    # recalls 3/4, 1/2, 1/1; class 3 absent is skipped.
    assert balanced_accuracy(truth, predicted, 4) == pytest.approx((0.75 + 0.5 + 1.0) / 3)


def test_ece_by_hand() -> None:
    probs = np.array([[0.85, 0.15], [0.82, 0.18], [0.35, 0.65], [0.38, 0.62]])
    truth = np.array([0, 1, 1, 1])
    # 10 bins. Bin (0.8, 0.9]: confidences 0.85, 0.82 → mean 0.835, accuracy 1/2 → gap 0.335, weight 1/2.
    # Bin (0.6, 0.7]: 0.65, 0.62 → mean 0.635, accuracy 1 → gap 0.365, weight 1/2. ECE = 0.35.
    assert expected_calibration_error(probs, truth, n_bins=10) == pytest.approx(0.35)
    conf, acc, count = reliability_bins(probs, truth, n_bins=10)
    assert count.tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 2, 0]
    assert conf[8] == pytest.approx(0.835) and acc[6] == 1.0


def test_dice_and_jaccard_by_hand() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 pixels
    b[0, 1:] = True  # 3 pixels, 2 shared
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert jaccard(a, b) == pytest.approx(2 / 4)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(ValueError, match=r"mask shapes differ"):
        dice(a, np.zeros((3, 3), bool))
