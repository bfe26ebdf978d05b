"""Training recipe of the reference lesion segmenter bundle (HAM10000 masks).

``--arch scratch``: a small residual MONAI UNet from random weights; ``efficientnet-lite0``: a U-Net decoder
on the ImageNet-pretrained EfficientNet-Lite0 encoder with the field-of-view augmentation (see
:mod:`inference.training.recipes`). One sigmoid channel, Dice + BCE loss (MONAI DiceCELoss) on soft resized
masks, geometry augmentation shared by image and mask, colour jitter, weight EMA. Only training images with a
mask are used, less the few HAM10000 ground-truth masks that are inverted (they mark the skin, not the
lesion: :func:`inverted_masks`, logged and skipped); the fixed validation split is never trained on.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from torch import nn
from tqdm import tqdm

from dermnode.kernel.errors import InferenceError
from inference.models.bundle import BundleMetadata, Task
from inference.models.lesion_classes import LESION
from inference.models.preprocess import normalise_batch
from inference.training.augment import augment
from inference.training.classification import source_record
from inference.training.data import pack_records, partition, read_ids, read_records
from inference.training.loop import TrainConfig, run_record, seeded_generator, train
from inference.training.mask_quality import inverted_masks
from inference.training.model_card import write_trained_bundle
from inference.training.recipes import SCRATCH, segmenter_recipe


def segmenter_size(image_size: int) -> tuple[int, int]:
    """``--image-size`` is the width; rows keep HAM10000's 3:4 aspect (128 → 96 x 128)."""
    return (round(image_size * 3 / 4 / 8) * 8, image_size)


def train_segmenter(config: TrainConfig) -> Path:
    """Run the recipe and write a trained segmenter bundle to ``config.out``; returns the bundle path."""
    gen = seeded_generator(config.seed)
    recipe = segmenter_recipe(config.arch)
    size = segmenter_size(config.image_size) if config.arch == SCRATCH else recipe.input_size(config.image_size)
    normalisation = recipe.normalisation
    records = [r for r in read_records(config.data) if r.mask_path is not None]
    if not records:
        raise InferenceError(f"No row of {config.data}/labels.csv has a mask_path; segmentation needs masks.")
    training, validation = partition(records, read_ids(config.validation_ids))
    pack = pack_records(
        training,
        size,
        normalisation.colour_constancy,
        config.cache_dir,
        with_masks=True,
        progress=lambda items: tqdm(items, desc="packing train", disable=not config.progress, mininterval=10),
    )
    assert pack.masks is not None
    inverted = inverted_masks(pack.masks)
    skipped = [pack.ids[i] for i in np.flatnonzero(inverted)]
    if skipped:
        print(f"skipping {len(skipped)} training image(s) whose mask looks inverted: {', '.join(skipped)}", flush=True)
    keep = torch.from_numpy(np.flatnonzero(~inverted))
    images = torch.from_numpy(pack.images).permute(0, 3, 1, 2)[keep]
    masks = torch.from_numpy(pack.masks)[:, None][keep]
    spec = recipe.spec
    model, pretrained = recipe.build()
    criterion = DiceCELoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)

    def loss_fn(net: nn.Module, rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        device = next(net.parameters()).device
        x = images[rows].to(device).float() / 255.0
        y = masks[rows].to(device).float() / 255.0
        x, y_aug = augment(x, y, g, recipe.augmentation)
        assert y_aug is not None
        return criterion(net(normalise_batch(x * 255.0, normalisation)).float(), y_aug)

    result = train(config, model, torch.ones(len(keep), dtype=torch.float64), loss_fn, gen)
    meta = BundleMetadata(
        name="dermnode-segmenter",
        version=config.version,
        description=recipe.description,
        task=Task.SEGMENTATION,
        network=spec,
        input_size=size,
        normalisation=normalisation,
        labels=(LESION,),
        operating_threshold=0.5,
        trained=True,
        mask_threshold=0.5,
        training={
            "data": f"{os.path.relpath(config.data)} (labels.csv layout): {len(training)} training images with masks "
            f"({dict(Counter(r.source for r in training))}); {len(validation)} validation images held out",
            "split": f"by lesion_id; validation = {config.validation_ids.name} (fixed, never trained on)",
        }
        | ({"skipped_inverted_masks": skipped} if skipped else {})
        | source_record((), pretrained)
        | run_record(config, result),
    )
    write_trained_bundle(config.out, meta, result.model)
    return config.out

