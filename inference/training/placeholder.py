"""Placeholder bundles with seeded random weights, so a fresh install runs end to end before training.

Run ``python -m inference.training.placeholder --out inference/bundles``. The bundles say ``trained: false`` and
their names end in ``UNTRAINED``; every output built from them carries that label.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from inference.models.bundle import BundleMetadata, Task, metadata_document, write_bundle
from inference.models.lesion_classes import HAM10000_CLASSES, LESION, MELANOMA_KEY
from inference.models.networks import build_network
from inference.training.architectures import (
    CLASSIFIER_INPUT,
    NORMALISATION,
    SEGMENTER_INPUT,
    classifier_network,
    segmenter_network,
)

VERSION = "0.0.0-untrained"

CARD = """# {name} {version}

**UNTRAINED placeholder.** Seeded random weights (seed {seed}) so that dermnode runs end to end before
the reference models are trained. Its outputs carry no information about the lesion. NOT for diagnostic use.

Made by `python -m inference.training.placeholder --out inference/bundles`.
"""


def placeholder_metadata(task: Task, seed: int) -> BundleMetadata:
    classification = task is Task.CLASSIFICATION
    name = "dermnode-classifier-UNTRAINED" if classification else "dermnode-segmenter-UNTRAINED"
    return BundleMetadata(
        name=name,
        version=VERSION,
        description=f"Untrained placeholder {task.value} network with seeded random weights.",
        task=task,
        network=classifier_network(len(HAM10000_CLASSES)) if classification else segmenter_network(),
        input_size=CLASSIFIER_INPUT if classification else SEGMENTER_INPUT,
        normalisation=NORMALISATION,
        labels=HAM10000_CLASSES if classification else (LESION,),
        operating_threshold=0.5,
        trained=False,
        melanoma_key=MELANOMA_KEY if classification else None,
        training={"seed": seed, "epochs": 0, "data": "none", "command": "python -m inference.training.placeholder"},
    )


def write_placeholder(out: Path, task: Task, seed: int = 0) -> Path:
    """Write one placeholder bundle to ``out`` and return the folder."""
    meta = placeholder_metadata(task, seed)
    torch.manual_seed(seed)
    network = build_network(meta.network.name, meta.network.kwargs)
    document = metadata_document(meta, data_source="none (random weights)")
    write_bundle(out, document, network, CARD.format(name=meta.name, version=meta.version, seed=seed))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", type=Path, default=Path("inference/bundles"), help="folder for classifier/ and segmenter/"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_placeholder(args.out / "classifier", Task.CLASSIFICATION, args.seed)
    write_placeholder(args.out / "segmenter", Task.SEGMENTATION, args.seed)
    print(f"wrote untrained placeholder bundles to {args.out}/classifier and {args.out}/segmenter")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
