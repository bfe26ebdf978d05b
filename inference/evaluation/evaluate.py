"""Measure bundles on the fixed validation split through :class:`Analyzer` (the deployed code path).

Writes ``metrics.json`` (overall and ``by_source``), ``per_image.csv`` and plots (ROC curves, confusion
matrix, reliability diagram, worst segmentation cases). ``record=True`` stores the figures in the
bundles' metadata and regenerates their model cards.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dermnode.kernel.errors import InferenceError
from inference.evaluation.attention import attention_share, circular_vignette, median_or_nan
from inference.evaluation.metrics import (
    balanced_accuracy,
    dice,
    expected_calibration_error,
    jaccard,
    roc_auc,
    sensitivity_specificity,
)
from inference.evaluation.outcomes import WORST_CASES, Outcomes, WorstCases
from inference.evaluation.plots import write_plots
from inference.models.bundle import read_metadata
from inference.models.predict import DEFAULT_CLASSIFIER, DEFAULT_SEGMENTER, AnalysisOptions, Analyzer
from inference.models.prediction import decide
from inference.models.preprocess import resize_map
from inference.training.data import VALIDATION_IDS, Record, partition, read_ids, read_mask, read_records, read_rgb
from inference.training.mask_quality import inverted_mask
from inference.training.model_card import CHECK_SUBSET, rewrite_metadata

BATCH = 32


@dataclass(frozen=True)
class EvaluationOptions:
    data: Path
    out: Path
    classifier: Path | None = None
    segmenter: Path | None = None
    limit: int | None = None
    validation_ids: Path = VALIDATION_IDS
    all_images: bool = False
    device: str = "cpu"
    tta: bool = True
    plots: bool = True
    record: bool = False
    command: str = "dermnode evaluate"
    #: Only images of this source (``labels.csv`` column ``source``), e.g. a leave-one-source-out test.
    source: str | None = None
    #: Grad-CAM attention-in-lesion on images with a mask (plain and with a circular black vignette).
    attention: bool = True


def validation_records(
    data: Path, ids_file: Path, limit: int | None, all_images: bool = False, source: str | None = None
) -> tuple[list[Record], str]:
    """The records to evaluate, sorted by image id, and what they are.

    A folder that shares images with ``ids_file`` (our own data) is evaluated on those images only,
    never on training images; any other folder (an external test set) is evaluated whole, as is
    every folder with ``all_images``. With ``limit``, that many evenly spaced records are kept (a
    deterministic subset that keeps the mix of sources). With ``source``, only that source's images count.
    """
    records = read_records(data)
    if source is not None:
        sources = sorted({r.source for r in records})
        records = [r for r in records if r.source == source]
        if not records:
            raise InferenceError(f"{data} has no image of source {source!r}; its sources are {sources}.")
    if all_images:
        validation, selection = records, "all images (--all-images)"
    else:
        _, validation = partition(records, read_ids(ids_file))
        selection = f"the images listed in {ids_file.name}"
        if not validation:
            validation, selection = records, f"all images (none is listed in {ids_file.name}: an external set)"
    if not validation:
        raise InferenceError(f"{data} lists no image; nothing to evaluate.")
    validation.sort(key=lambda r: r.image_id)
    if source is not None:
        selection += f", source {source}"
    if not limit or limit >= len(validation):
        return validation, selection
    picks = np.unique(np.linspace(0, len(validation) - 1, limit).round().astype(int))
    return [validation[int(i)] for i in picks], selection


def evaluate(options: EvaluationOptions) -> dict[str, Any]:
    """Run the analysis on the validation images and write the report; returns the metrics."""
    classifier = options.classifier or DEFAULT_CLASSIFIER
    segmenter = options.segmenter or DEFAULT_SEGMENTER
    analyzer = Analyzer.from_bundles(classifier, segmenter, options.device, AnalysisOptions(tta=options.tta))
    records, selection = validation_records(options.data, options.validation_ids, options.limit,
                                            options.all_images, options.source)
    outcomes = run(analyzer, records, attention=options.attention)
    meta = analyzer.classifier.metadata
    keys = [x.key for x in meta.labels]
    malignant = [i for i, x in enumerate(meta.labels) if x.malignant]
    metrics = summarise(outcomes, keys, meta.melanoma_key or "mel", malignant, meta.operating_threshold)
    metrics["command"] = options.command
    metrics["validation_ids"] = options.validation_ids.name
    metrics["selection"] = selection
    metrics["limit"] = options.limit
    metrics["tta"] = options.tta
    metrics["classifier"] = analyzer.classifier.metadata.identity.label
    metrics["segmenter"] = analyzer.segmenter.metadata.identity.label
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2) + "\n", encoding="utf-8")
    _write_per_image(options.out / "per_image.csv", outcomes, keys)
    if options.plots:
        write_plots(options.out, outcomes, keys, meta.melanoma_key or "mel", malignant)
    if options.record:
        record_metrics(classifier, segmenter, metrics)
    return metrics


def run(analyzer: Analyzer, records: Sequence[Record], attention: bool = True) -> Outcomes:
    """Analyse ``records`` in batches; Dice/Jaccard at source resolution where a mask exists, and (with
    ``attention`` and a classifier that names an attention layer) attention-in-lesion there too."""
    probabilities = []
    calls: list[int] = []
    dices: list[float | None] = []
    jaccards: list[float | None] = []
    in_lesion: list[float | None] = []
    in_lesion_vignette: list[float | None] = []
    inverted: list[bool] = []
    worst = WorstCases(WORST_CASES)
    with_attention = attention and analyzer.classifier.metadata.network.attention_layer is not None
    for start in range(0, len(records), BATCH):
        chunk = records[start : start + BATCH]
        images = [read_rgb(r.image_path) for r in chunk]
        predictions = analyzer.analyze(images, attention=False)
        plain, vignetted = (
            attention_in_lesion(analyzer, chunk, images, [p.labels.index(p.predicted) for p in predictions])
            if with_attention
            else ([None] * len(chunk), [None] * len(chunk))
        )
        in_lesion.extend(plain)
        in_lesion_vignette.extend(vignetted)
        for record, prediction in zip(chunk, predictions, strict=True):
            probabilities.append(prediction.probabilities)
            calls.append(prediction.labels.index(prediction.predicted))
            if record.mask_path is None:
                dices.append(None)
                jaccards.append(None)
                inverted.append(False)
                continue
            truth = read_mask(record.mask_path)
            inverted.append(inverted_mask(truth))
            if truth.shape != prediction.mask.shape:
                raise InferenceError(
                    f"{record.mask_path} is {truth.shape} but its image is {prediction.mask.shape}; "
                    "masks must be on the image's pixel grid."
                )
            score = dice(prediction.mask, truth)
            dices.append(score)
            jaccards.append(jaccard(prediction.mask, truth))
            worst.offer(score, len(dices) - 1, prediction.mask)
    return Outcomes(
        list(records),
        np.stack(probabilities).astype(np.float32),
        np.asarray(calls, np.int64),
        dices,
        jaccards,
        worst_masks=worst.masks(),
        attention_in_lesion=in_lesion,
        attention_in_lesion_vignette=in_lesion_vignette,
        inverted_mask=inverted,
    )


def attention_in_lesion(
    analyzer: Analyzer, records: Sequence[Record], images: Sequence[npt.NDArray[np.uint8]], calls: Sequence[int]
) -> tuple[list[float | None], list[float | None]]:
    """Grad-CAM share inside the true lesion mask for the records with a mask: of the called class on the
    image, and of the class called on the image with a circular black vignette (None without a usable mask:
    none, or one that looks inverted)."""
    plain: list[float | None] = [None] * len(records)
    vignetted: list[float | None] = [None] * len(records)
    truths, rows = [], []
    for i, record in enumerate(records):
        if record.mask_path is not None:
            truth = read_mask(record.mask_path)
            if not inverted_mask(truth):
                truths.append(truth)
                rows.append(i)
    if not rows:
        return plain, vignetted
    maps = analyzer.attention_maps([images[i] for i in rows], [calls[i] for i in rows])
    dark = [circular_vignette(images[i]) for i in rows]
    dark_calls = decide(analyzer.classify(dark), analyzer.classifier.metadata.decision_weights)
    dark_maps = analyzer.attention_maps(dark, [int(c) for c in dark_calls])
    for k, i in enumerate(rows):
        shape = truths[k].shape
        plain[i] = attention_share(resize_map(maps[k], shape), truths[k])
        vignetted[i] = attention_share(resize_map(dark_maps[k], shape), truths[k])
    return plain, vignetted


def summarise(
    outcomes: Outcomes, keys: Sequence[str], melanoma_key: str, malignant: Sequence[int], threshold: float
) -> dict[str, Any]:
    """Overall metrics plus the same per source, and the largest per-source melanoma-AUC gap."""
    metrics = _block(outcomes, np.arange(len(outcomes.records)), keys, melanoma_key, malignant, threshold)
    sources = sorted({r.source for r in outcomes.records})
    by_source = {}
    for source in sources:
        rows = np.array([i for i, r in enumerate(outcomes.records) if r.source == source])
        by_source[source] = _block(outcomes, rows, keys, melanoma_key, malignant, threshold)
    aucs = [m["melanoma_auc"] for m in by_source.values() if not math.isnan(m["melanoma_auc"])]
    metrics["melanoma_auc_source_gap"] = float(max(aucs) - min(aucs)) if len(aucs) > 1 else float("nan")
    metrics["by_source"] = by_source
    return metrics


def _block(
    outcomes: Outcomes,
    rows: npt.NDArray[np.integer],
    keys: Sequence[str],
    melanoma_key: str,
    malignant: Sequence[int],
    threshold: float,
) -> dict[str, Any]:
    probs = outcomes.probabilities[rows]
    truth = np.array([keys.index(outcomes.records[i].diagnosis) for i in rows], dtype=np.int64)
    mel = keys.index(melanoma_key)
    is_mel = truth == mel
    is_malignant = np.isin(truth, list(malignant))
    sens, spec = sensitivity_specificity(probs[:, mel], is_mel, threshold)
    dices = [d for d in (outcomes.dice[i] for i in rows) if d is not None]
    jaccards = [j for j in (outcomes.jaccard[i] for i in rows) if j is not None]
    inverted = outcomes.inverted_mask
    valid_dices = [
        d
        for d, bad in ((outcomes.dice[i], i < len(inverted) and inverted[i]) for i in rows)
        if d is not None and not bad
    ]
    plain = outcomes.attention_in_lesion
    vignetted = outcomes.attention_in_lesion_vignette
    return {
        "n_images": len(rows),
        "n_melanoma": int(is_mel.sum()),
        "n_with_mask": len(dices),
        "melanoma_auc": roc_auc(probs[:, mel], is_mel),
        "malignant_auc": roc_auc(probs[:, list(malignant)].sum(axis=1), is_malignant),
        "balanced_accuracy": balanced_accuracy(truth, outcomes.calls[rows], len(keys)),
        "accuracy": float((outcomes.calls[rows] == truth).mean()),
        "melanoma_sensitivity": sens,
        "melanoma_specificity": spec,
        "operating_threshold": threshold,
        "ece": expected_calibration_error(probs, truth),
        "dice_mean": float(np.mean(dices)) if dices else float("nan"),
        "dice_median": float(np.median(dices)) if dices else float("nan"),
        "jaccard_mean": float(np.mean(jaccards)) if jaccards else float("nan"),
        "n_inverted_masks": len(dices) - len(valid_dices),
        "dice_mean_valid_masks": float(np.mean(valid_dices)) if valid_dices else float("nan"),
        "dice_median_valid_masks": float(np.median(valid_dices)) if valid_dices else float("nan"),
        "n_attention": sum(1 for i in rows if i < len(plain) and plain[i] is not None),
        "attention_in_lesion_median": median_or_nan([plain[i] for i in rows if i < len(plain)]),
        "attention_in_lesion_median_vignette": median_or_nan([vignetted[i] for i in rows if i < len(vignetted)]),
    }


CLASSIFIER_KEYS = (
    "n_images",
    "n_melanoma",
    "melanoma_auc",
    "malignant_auc",
    "balanced_accuracy",
    "accuracy",
    "melanoma_sensitivity",
    "melanoma_specificity",
    "operating_threshold",
    "ece",
    "melanoma_auc_source_gap",
    "n_attention",
    "attention_in_lesion_median",
    "attention_in_lesion_median_vignette",
)
SEGMENTER_KEYS = (
    "n_images",
    "n_with_mask",
    "dice_mean",
    "dice_median",
    "jaccard_mean",
    "n_inverted_masks",
    "dice_mean_valid_masks",
    "dice_median_valid_masks",
)
RUN_KEYS = ("command", "validation_ids", "limit", "tta")


def record_metrics(classifier: Path, segmenter: Path, metrics: Mapping[str, Any]) -> None:
    """Store the measured figures in each bundle's metadata ``metrics`` and regenerate its model card.

    A whole-split evaluation replaces the headline figures (keeping a recorded check subset); one with
    ``limit`` is stored as the check subset under :data:`CHECK_SUBSET`, leaving the headline figures alone.
    """
    for bundle, keys in ((classifier, CLASSIFIER_KEYS), (segmenter, SEGMENTER_KEYS)):
        meta = read_metadata(bundle)
        by_source = {
            source: {k: v for k, v in m.items() if k in keys and k != "operating_threshold"}
            for source, m in metrics["by_source"].items()
        }
        measured = _jsonable({k: metrics[k] for k in (*RUN_KEYS, *keys)} | {"by_source": by_source})
        previous = dict(meta.metrics)
        if metrics.get("limit"):
            updated = previous | {CHECK_SUBSET: measured}
        else:
            updated = measured | ({CHECK_SUBSET: previous[CHECK_SUBSET]} if CHECK_SUBSET in previous else {})
        rewrite_metadata(bundle, replace(meta, metrics=updated))


def _write_per_image(path: Path, outcomes: Outcomes, keys: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "source", "diagnosis", "call", *[f"p_{k}" for k in keys], "dice", "jaccard"])
        for i, r in enumerate(outcomes.records):
            d, j = outcomes.dice[i], outcomes.jaccard[i]
            writer.writerow(
                [
                    r.image_id,
                    r.source,
                    r.diagnosis,
                    keys[int(outcomes.calls[i])],
                    *[f"{p:.5f}" for p in outcomes.probabilities[i]],
                    "" if d is None else f"{d:.4f}",
                    "" if j is None else f"{j:.4f}",
                ]
            )


def _jsonable(value: Any) -> Any:
    """nan → None (JSON null), numpy scalars → Python, recursively; floats rounded to 6 places."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value
