"""Training recipe of the reference classifier bundle (HAM10000's 7 classes).

``--arch scratch`` (no pretrained weights) or ``efficientnet-lite0`` (ImageNet weights, field-of-view
augmentation; see :mod:`inference.training.recipes`): batched flips/rotation/scale/colour augmentation, class-balanced
sampling (weights ∝ 1/√count) with a matching loss weight, label smoothing 0.1, weight EMA. Afterwards a
temperature and per-class logit biases are fitted on a calibration split carved from the TRAINING lesions
(see :mod:`inference.training.calibration`), and the melanoma operating threshold is set on the fixed
validation split for sensitivity ≥ 0.90. ``--exclude-source`` leaves sources out of training and calibration
(leave-one-source-out).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dermnode.kernel.errors import InferenceError
from inference.models.bundle import BundleMetadata, Normalisation, Task, load_bundle
from inference.models.lesion_classes import HAM10000_CLASSES, MELANOMA_KEY
from inference.models.predict import calibrated_probabilities, view_logits
from inference.models.preprocess import normalise_batch
from inference.training.architectures import NORMALISATION
from inference.training.augment import augment
from inference.training.calibration import NO_CALIBRATION, fit_calibration
from inference.training.data import Pack, Record, pack_records, partition, read_ids, read_records, split_by_lesion
from inference.training.loop import TrainConfig, run_record, seeded_generator, train
from inference.training.model_card import rewrite_metadata, write_trained_bundle
from inference.training.recipes import SCRATCH, classifier_recipe

CALIBRATION_FRACTION = 0.1
LABEL_SMOOTHING = 0.1
TARGET_SENSITIVITY = 0.90


def classifier_size(image_size: int) -> tuple[int, int]:
    """``--image-size`` is the width; rows keep HAM10000's 3:4 aspect (96 → 72 x 96)."""
    return (round(image_size * 3 / 4 / 8) * 8, image_size)


def train_classifier(config: TrainConfig) -> Path:
    """Run the recipe and write a trained classifier bundle to ``config.out``; returns the bundle path."""
    gen = seeded_generator(config.seed)
    recipe = classifier_recipe(config.arch, len(HAM10000_CLASSES))
    size = classifier_size(config.image_size) if config.arch == SCRATCH else recipe.input_size(config.image_size)
    normalisation = recipe.normalisation
    records = read_records(config.data)
    train_all, validation = partition(records, read_ids(config.validation_ids))
    if not validation:
        raise InferenceError(
            f"No image of {config.data} is in {config.validation_ids}; pass the validation ids of this data."
        )
    train_all = exclude_sources(train_all, config.exclude_sources)
    training, calibration = split_by_lesion(train_all, CALIBRATION_FRACTION, config.seed)
    packs = [
        pack_records(part, size, normalisation.colour_constancy, config.cache_dir, progress=_bar(name, config))
        for name, part in (("train", training), ("calibration", calibration), ("validation", validation))
    ]
    train_pack, calib_pack, val_pack = packs
    spec = recipe.spec
    model, pretrained = recipe.build()
    channels_last = config.arch != SCRATCH  # depthwise convolutions run faster so on CPU
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    counts = np.bincount(train_pack.labels, minlength=len(HAM10000_CLASSES)).astype(np.float64)
    inverse_sqrt = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    sample_weights = torch.as_tensor(inverse_sqrt[train_pack.labels], dtype=torch.float64)
    class_weights = torch.as_tensor(inverse_sqrt / (inverse_sqrt * counts).sum() * counts.sum(), dtype=torch.float32)
    images = torch.from_numpy(train_pack.images).permute(0, 3, 1, 2)  # uint8 NCHW view, stays on CPU
    labels = torch.from_numpy(train_pack.labels)

    def loss_fn(net: nn.Module, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        device = next(net.parameters()).device
        x = images[rows].to(device).float() / 255.0
        x, _ = augment(x, None, g, recipe.augmentation)
        x = normalise_batch(x * 255.0, normalisation)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return F.cross_entropy(
            net(x).float(), labels[rows].to(device), weight=class_weights.to(device), label_smoothing=LABEL_SMOOTHING
        )

    result = train(config, model, sample_weights, loss_fn, gen)
    meta = BundleMetadata(
        name="dermnode-classifier",
        version=config.version,
        description=recipe.description,
        task=Task.CLASSIFICATION,
        network=spec,
        input_size=size,
        normalisation=normalisation,
        labels=HAM10000_CLASSES,
        operating_threshold=0.5,
        trained=True,
        melanoma_key=MELANOMA_KEY,
        training={
            "data": f"{os.path.relpath(config.data)} (labels.csv layout): {len(training)} training, "
            f"{len(calibration)} calibration, {len(validation)} validation images; "
            f"sources {dict(Counter(r.source for r in training))}",
            "split": f"by lesion_id (else image_id); validation = {config.validation_ids.name} (fixed, never "
            "trained on)",
        }
        | source_record(config.exclude_sources, pretrained)
        | run_record(config, result),
    )
    write_trained_bundle(config.out, meta, result.model)
    calibrate_bundle(config.out, calib_pack, val_pack, config.device)
    return config.out


def calibrate_bundle(bundle: Path, calibration: Pack, validation: Pack, device: str = "cpu") -> BundleMetadata:
    """Fit the calibration on ``calibration`` (training lesions) and the melanoma threshold on ``validation``,
    both with the bundle as shipped (fp16 weights) scored the way :class:`Analyzer` scores; rewrite its metadata.
    """
    loaded = load_bundle(bundle, device)
    network = loaded.network.eval()
    fitted = (
        fit_calibration(
            pack_logits(network, calibration, normalisation=loaded.metadata.normalisation),
            torch.from_numpy(calibration.labels),
        )
        if calibration.ids
        else NO_CALIBRATION  # nothing held out to calibrate on (tiny data sets only)
    )
    training = {k: v for k, v in loaded.metadata.training.items() if k != "temperature_fitted_on"}
    training["calibration"] = (
        f"temperature + per-class logit bias fitted by NLL on the calibration split of training lesions "
        f"({len(calibration.ids)} images); decision weights exp(-bias)"
        if calibration.ids
        else "none: the calibration split of the training lesions is empty (temperature 1, no bias)"
    )
    meta = replace(
        loaded.metadata,
        temperature=fitted.temperature,
        logit_bias=fitted.logit_bias,
        decision_weights=fitted.decision_weights,
        training=training,
    )
    meta = replace(meta, operating_threshold=operating_threshold(network, validation, meta))
    rewrite_metadata(bundle, meta)
    return meta


def pack_logits(
    network: nn.Module, pack: Pack, batch_size: int = 256, normalisation: Normalisation = NORMALISATION
) -> torch.Tensor:
    """TTA view logits (views, N, classes) of a pack, exactly as :class:`Analyzer` computes them."""
    device = next(network.parameters()).device
    parts = []
    for start in range(0, len(pack.ids), batch_size):
        chunk = torch.from_numpy(pack.images[start : start + batch_size]).permute(0, 3, 1, 2)
        parts.append(view_logits(network, normalise_batch(chunk.to(device), normalisation), tta=True).cpu())
    return torch.cat(parts, dim=1)


def operating_threshold(network: nn.Module, pack: Pack, meta: BundleMetadata) -> float:
    """Highest melanoma-probability threshold whose sensitivity on ``pack`` is at least 0.90."""
    logits = pack_logits(network, pack, normalisation=meta.normalisation)
    probs = calibrated_probabilities(logits, meta.temperature, meta.logit_bias).numpy()
    mel = [x.key for x in HAM10000_CLASSES].index(MELANOMA_KEY)
    return threshold_for_sensitivity(probs[:, mel], pack.labels == mel, TARGET_SENSITIVITY)


def threshold_for_sensitivity(
    scores: npt.NDArray[np.floating], positive: npt.NDArray[np.bool_], sensitivity: float
) -> float:
    """Largest t with mean(scores[positive] >= t) >= ``sensitivity`` (0.5 when there are no positives)."""
    pos = np.sort(np.asarray(scores)[np.asarray(positive)])[::-1]
    if len(pos) == 0:
        return 0.5
    k = math.ceil(sensitivity * len(pos))
    return float(np.floor(float(pos[k - 1]) * 1e6) / 1e6)


def exclude_sources(records: list[Record], sources: Iterable[str]) -> list[Record]:
    """``records`` without those of ``sources``; an unknown source name is an error (a typo would silently
    train on everything)."""
    left_out = set(sources)
    if not left_out:
        return records
    unknown = left_out - {r.source for r in records}
    if unknown:
        raise InferenceError(
            f"--exclude-source {sorted(unknown)} is not a source of the training data; its sources are "
            f"{sorted({r.source for r in records})}."
        )
    return [r for r in records if r.source not in left_out]


def source_record(excluded: Iterable[str], pretrained: str | None) -> dict[str, object]:
    """The training-record entries for left-out sources and the pretrained weights (none when unused)."""
    record: dict[str, object] = {}
    if pretrained:
        record["pretrained"] = f"{pretrained} (ImageNet weights)"
    if excluded:
        record["excluded_sources"] = sorted(excluded)
    return record


def _bar(name: str, config: TrainConfig) -> Callable[[Iterable[Record]], Iterable[Record]]:
    return lambda items: tqdm(items, desc=f"packing {name}", disable=not config.progress, mininterval=10)
