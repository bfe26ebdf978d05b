"""Classification and segmentation metrics in plain numpy (no scikit-learn), each tested by hand.

Undefined values (an AUC without both classes present) are ``nan``; reports turn them into ``null``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.integer]


def roc_auc(scores: npt.ArrayLike, positive: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann–Whitney U with average ranks for ties); nan without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: npt.ArrayLike, positive: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(false positive rate, true positive rate, thresholds), thresholds decreasing, starting at +inf."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(positive, dtype=bool)
    thresholds = np.concatenate([[np.inf], np.unique(s)[::-1]])
    tpr = np.array([(s[p] >= t).sum() for t in thresholds], dtype=np.float64) / max(1, int(p.sum()))
    fpr = np.array([(s[~p] >= t).sum() for t in thresholds], dtype=np.float64) / max(1, int((~p).sum()))
    return fpr, tpr, thresholds


def sensitivity_specificity(scores: npt.ArrayLike, positive: npt.ArrayLike, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``scores >= threshold``; nan where a class is absent."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(positive, dtype=bool)
    called = s >= threshold
    sens = float(called[p].mean()) if p.any() else float("nan")
    spec = float((~called[~p]).mean()) if (~p).any() else float("nan")
    return sens, spec


def confusion_matrix(truth: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int) -> IntArray:
    """Counts (n_classes, n_classes): rows are the true class, columns the predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def balanced_accuracy(truth: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int) -> float:
    """Mean per-class recall over the classes present in ``truth``."""
    matrix = confusion_matrix(truth, predicted, n_classes)
    present = matrix.sum(axis=1) > 0
    if not present.any():
        return float("nan")
    recall = np.diag(matrix)[present] / matrix.sum(axis=1)[present]
    return float(recall.mean())


def reliability_bins(
    probabilities: npt.ArrayLike, truth: npt.ArrayLike, n_bins: int = 15
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Top-label reliability: per equal-width confidence bin, (mean confidence, accuracy, count)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(truth)
    # Bins are (lo, hi]; a confidence of exactly 0 joins the first bin.
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins) / count
    return mean_conf, accuracy, count


def expected_calibration_error(probabilities: npt.ArrayLike, truth: npt.ArrayLike, n_bins: int = 15) -> float:
    """Top-label ECE: Σ_b (n_b / N) · |accuracy_b − confidence_b| over equal-width bins."""
    mean_conf, accuracy, count = reliability_bins(probabilities, truth, n_bins)
    used = count > 0
    if not used.any():
        return float("nan")
    return float(np.sum(count[used] / count.sum() * np.abs(accuracy[used] - mean_conf[used])))


def dice(predicted: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """2|A∩B| / (|A| + |B|); 1.0 when both masks are empty."""
    a, b = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: predicted {a.shape}, truth {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def jaccard(predicted: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """|A∩B| / |A∪B|; 1.0 when both masks are empty."""
    a, b = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: predicted {a.shape}, truth {b.shape}")
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union
