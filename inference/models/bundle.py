"""MONAI-style model bundles: ``configs/metadata.json`` + ``models/model.pt`` + ``docs/README.md``.

The metadata carries MONAI's usual keys (``version``, ``monai_version``, ``network_data_format`` …) so
``monai.bundle`` tools can read it, plus everything dermnode needs under the ``dermnode`` key: the network
(from a fixed registry), input size, normalisation, labels with their codes, thresholds, how it was
trained and what was measured. A bundle is loaded whole or rejected with a :class:`BundleError` that
names the file and says what to fix.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from torch import nn

from dermnode.kernel.errors import BundleError
from inference.models.devices import resolve_device
from inference.models.networks import build_network, output_channels
from inference.models.prediction import ClassLabel, CodedConcept, ModelIdentity

METADATA_FILE = Path("configs") / "metadata.json"
WEIGHTS_FILE = Path("models") / "model.pt"
README_FILE = Path("docs") / "README.md"

MONAI_KEYS = (
    "version",
    "changelog",
    "monai_version",
    "pytorch_version",
    "name",
    "task",
    "description",
    "authors",
    "copyright",
    "data_source",
    "license",
    "network_data_format",
)
DERMNODE_REQUIRED = (
    "task",
    "network",
    "input_size",
    "normalisation",
    "labels",
    "operating_threshold",
    "trained",
)
DERMNODE_OPTIONAL = (
    "melanoma_key",
    "temperature",
    "logit_bias",
    "decision_weights",
    "mask_threshold",
    "training",
    "metrics",
)
COLOUR_CONSTANCY = ("shades_of_gray", "none")


class Task(StrEnum):
    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"


@dataclass(frozen=True)
class NetworkSpec:
    """A registered MONAI network and its keyword arguments; ``attention_layer`` is the Grad-CAM layer."""

    name: str
    kwargs: Mapping[str, Any]
    attention_layer: str | None = None


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean/std on 0..1 RGB after optional Shades-of-Gray colour constancy."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    colour_constancy: str = "shades_of_gray"


@dataclass(frozen=True)
class BundleMetadata:
    """Everything in ``configs/metadata.json`` that dermnode uses (``document`` keeps the full JSON)."""

    name: str
    version: str
    description: str
    task: Task
    network: NetworkSpec
    input_size: tuple[int, int]
    normalisation: Normalisation
    labels: tuple[ClassLabel, ...]
    operating_threshold: float
    trained: bool
    melanoma_key: str | None = None
    temperature: float = 1.0
    #: Added to logits / temperature before the softmax (one per label; empty = none): with the temperature
    #: it calibrates the probabilities to the class frequencies the model will meet.
    logit_bias: tuple[float, ...] = ()
    #: Multiply the probabilities before the argmax that calls the class (one per label; empty = plain argmax).
    decision_weights: tuple[float, ...] = ()
    mask_threshold: float = 0.5
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(name=self.name, version=self.version, trained=self.trained)

    def label_index(self, key: str) -> int:
        for i, label in enumerate(self.labels):
            if label.key == key:
                return i
        raise BundleError(
            f"Bundle {self.name!r} has no label {key!r}; its labels are {[x.key for x in self.labels]}."
        )


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: metadata plus the network in eval mode on ``device``."""

    path: Path
    metadata: BundleMetadata
    network: nn.Module
    device: torch.device


def metadata_document(
    meta: BundleMetadata,
    *,
    authors: str = "dermnode contributors",
    copyright: str = "Copyright (c) dermnode contributors",
    data_source: str = "",
    license: str = "Apache-2.0 (code); weights: see docs/README.md",
    changelog: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The full ``metadata.json`` document for ``meta``: MONAI's keys plus ours under ``dermnode``."""
    h, w = meta.input_size
    if meta.task is Task.CLASSIFICATION:
        output = {
            "type": "probabilities",
            "format": "classes",
            "num_channels": len(meta.labels),
            "spatial_shape": [len(meta.labels)],
            "dtype": "float32",
            "value_range": [0, 1],
            "is_onehot": True,
            "channel_def": {str(i): label.key for i, label in enumerate(meta.labels)},
        }
    else:
        output = {
            "type": "image",
            "format": "segmentation",
            "num_channels": 1,
            "spatial_shape": [h, w],
            "dtype": "float32",
            "value_range": [0, 1],
            "is_patch_data": False,
            "channel_def": {"0": meta.labels[0].key},
        }
    dermnode: dict[str, Any] = {
        "task": meta.task.value,
        "network": {
            "name": meta.network.name,
            "kwargs": dict(meta.network.kwargs),
            "attention_layer": meta.network.attention_layer,
        },
        "input_size": [h, w],
        "normalisation": {
            "mean": list(meta.normalisation.mean),
            "std": list(meta.normalisation.std),
            "colour_constancy": meta.normalisation.colour_constancy,
        },
        "labels": [
            {
                "key": x.key,
                "name": x.name,
                "malignant": x.malignant,
                "code": {"value": x.code.value, "scheme": x.code.scheme, "meaning": x.code.meaning},
            }
            for x in meta.labels
        ],
        "melanoma_key": meta.melanoma_key,
        "operating_threshold": meta.operating_threshold,
        "temperature": meta.temperature,
        "logit_bias": list(meta.logit_bias),
        "decision_weights": list(meta.decision_weights),
        "mask_threshold": meta.mask_threshold,
        "trained": meta.trained,
        "training": dict(meta.training),
        "metrics": dict(meta.metrics),
    }
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": meta.version,
        "changelog": dict(changelog or {meta.version: "initial"}),
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "name": meta.name,
        "task": f"Dermoscopy lesion {meta.task.value}",
        "description": meta.description,
        "authors": authors,
        "copyright": copyright,
        "data_source": data_source,
        "license": license,
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "dermoscopy",
                    "num_channels": 3,
                    "spatial_shape": [h, w],
                    "dtype": "float32",
                    "value_range": [0, 255],
                    "is_patch_data": False,
                    "channel_def": {"0": "R", "1": "G", "2": "B"},
                }
            },
            "outputs": {"pred": output},
        },
        "dermnode": dermnode,
    }


def parse_metadata(document: Mapping[str, Any], source: Path) -> BundleMetadata:
    """Validate a metadata document (read from ``source``) and return it as :class:`BundleMetadata`."""
    missing = [key for key in MONAI_KEYS if key not in document]
    if missing:
        raise BundleError(
            f"{source} lacks the MONAI metadata keys {missing}; add them (see inference/bundle.py)."
        )
    ours = document.get("dermnode")
    if not isinstance(ours, Mapping):
        raise BundleError(f"{source} has no 'dermnode' object; add one with keys {list(DERMNODE_REQUIRED)}.")
    missing = [key for key in DERMNODE_REQUIRED if key not in ours]
    if missing:
        raise BundleError(f"{source} 'dermnode' lacks the keys {missing}; add them.")
    unknown = sorted(set(ours) - set(DERMNODE_REQUIRED) - set(DERMNODE_OPTIONAL))
    if unknown:
        raise BundleError(
            f"{source} 'dermnode' has unknown keys {unknown}; allowed are "
            f"{sorted((*DERMNODE_REQUIRED, *DERMNODE_OPTIONAL))}."
        )
    try:
        task = Task(ours["task"])
    except ValueError as e:
        raise BundleError(
            f"{source} dermnode.task is {ours['task']!r}; use 'classification' or 'segmentation'."
        ) from e
    net = ours["network"]
    if (
        not isinstance(net, Mapping)
        or not isinstance(net.get("name"), str)
        or not isinstance(net.get("kwargs", {}), Mapping)
    ):
        raise BundleError(
            f"{source} dermnode.network must be {{'name': str, 'kwargs': {{...}}}}, got {net!r}."
        )
    size = ours["input_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise BundleError(
            f"{source} dermnode.input_size must be [rows, columns] of positive integers, got {size!r}."
        )
    normalisation = _parse_normalisation(ours["normalisation"], source)
    labels = tuple(_parse_label(x, source) for x in _list(ours["labels"], "labels", source))
    if not labels:
        raise BundleError(f"{source} dermnode.labels is empty; list the network's output classes in order.")
    melanoma_key = ours.get("melanoma_key")
    if task is Task.CLASSIFICATION:
        if melanoma_key not in {x.key for x in labels}:
            raise BundleError(
                f"{source} dermnode.melanoma_key {melanoma_key!r} is not one of the label keys "
                f"{[x.key for x in labels]}; set it to the melanoma class key (usually 'mel')."
            )
    elif len(labels) != 1:
        raise BundleError(
            f"{source} is a segmentation bundle with {len(labels)} labels; it must have exactly one."
        )
    threshold = _probability(ours["operating_threshold"], "operating_threshold", source)
    temperature = ours.get("temperature", 1.0)
    if not isinstance(temperature, int | float) or temperature <= 0:
        raise BundleError(f"{source} dermnode.temperature must be a positive number, got {temperature!r}.")
    logit_bias = _per_label(ours.get("logit_bias", []), "logit_bias", len(labels), source, positive=False)
    decision_weights = _per_label(ours.get("decision_weights", []), "decision_weights", len(labels), source,
                                  positive=True)
    if not isinstance(ours["trained"], bool):
        raise BundleError(f"{source} dermnode.trained must be true or false, got {ours['trained']!r}.")
    return BundleMetadata(
        name=str(document["name"]),
        version=str(document["version"]),
        description=str(document["description"]),
        task=task,
        network=NetworkSpec(str(net["name"]), dict(net.get("kwargs", {})), net.get("attention_layer")),
        input_size=(int(size[0]), int(size[1])),
        normalisation=normalisation,
        labels=labels,
        operating_threshold=threshold,
        trained=bool(ours["trained"]),
        melanoma_key=melanoma_key,
        temperature=float(temperature),
        logit_bias=logit_bias,
        decision_weights=decision_weights,
        mask_threshold=_probability(ours.get("mask_threshold", 0.5), "mask_threshold", source),
        training=dict(ours.get("training") or {}),
        metrics=dict(ours.get("metrics") or {}),
        document=dict(document),
    )


def read_metadata(bundle: Path) -> BundleMetadata:
    """Read and validate ``<bundle>/configs/metadata.json``."""
    path = Path(bundle) / METADATA_FILE
    if not path.is_file():
        raise BundleError(
            f"{path} does not exist; a bundle folder needs configs/metadata.json, models/model.pt "
            "and docs/README.md."
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is not readable JSON ({e}); fix or regenerate the bundle.") from e
    if not isinstance(document, Mapping):
        raise BundleError(f"{path} must hold a JSON object, not {type(document).__name__}.")
    return parse_metadata(document, path)


def load_bundle(bundle: Path, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle: validate metadata, build the network, load weights, move to ``device``, eval()."""
    bundle = Path(bundle)
    meta = read_metadata(bundle)
    weights = bundle / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{weights} does not exist; put the network's state_dict there (torch.save).")
    network = build_network(meta.network.name, meta.network.kwargs)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise BundleError(
            f"{weights} could not be read as a torch state_dict ({e}); re-export the weights."
        ) from e
    if not isinstance(state, Mapping):
        raise BundleError(
            f"{weights} holds a {type(state).__name__}, not a state_dict; save model.state_dict()."
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(
            f"{weights} does not fit network {meta.network.name} {dict(meta.network.kwargs)} "
            f"from {bundle / METADATA_FILE}: "
            f"{str(e).splitlines()[0]} Make the metadata's network match the weights."
        ) from e
    channels = output_channels(network, meta.input_size)
    expected = len(meta.labels) if meta.task is Task.CLASSIFICATION else 1
    if channels != expected and not (meta.task is Task.SEGMENTATION and channels == 2):
        raise BundleError(
            f"{bundle / METADATA_FILE} lists {len(meta.labels)} labels but the network outputs "
            f"{channels} channels; "
            f"a {meta.task.value} bundle needs {expected} output channel(s) for its labels."
        )
    torch_device = resolve_device(device) if isinstance(device, str) else device
    network.to(torch_device).eval()
    return Bundle(path=bundle, metadata=meta, network=network, device=torch_device)


def write_bundle(
    bundle: Path, document: Mapping[str, Any], network: nn.Module, readme: str, *, half: bool = True
) -> None:
    """Write a bundle folder: metadata document, weights (fp16 when ``half``) and the model card."""
    parse_metadata(document, Path(bundle) / METADATA_FILE)  # never write what we cannot read back
    bundle = Path(bundle)
    for sub in (METADATA_FILE, WEIGHTS_FILE, README_FILE):
        (bundle / sub).parent.mkdir(parents=True, exist_ok=True)
    (bundle / METADATA_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    state = {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in network.state_dict().items()
    }
    torch.save(state, bundle / WEIGHTS_FILE)
    (bundle / README_FILE).write_text(readme, encoding="utf-8")


def _parse_normalisation(raw: Any, source: Path) -> Normalisation:
    if not isinstance(raw, Mapping) or "mean" not in raw or "std" not in raw:
        raise BundleError(
            f"{source} dermnode.normalisation must be {{'mean': [r,g,b], 'std': [r,g,b]}}, got {raw!r}."
        )
    mean, std = raw["mean"], raw["std"]
    for name, values in (("mean", mean), ("std", std)):
        if not (
            isinstance(values, list) and len(values) == 3 and all(isinstance(v, int | float) for v in values)
        ):
            raise BundleError(
                f"{source} dermnode.normalisation.{name} must be three numbers, got {values!r}."
            )
    if any(v <= 0 for v in std):
        raise BundleError(f"{source} dermnode.normalisation.std must be positive, got {std!r}.")
    constancy = raw.get("colour_constancy") or "none"
    if constancy not in COLOUR_CONSTANCY:
        raise BundleError(
            f"{source} dermnode.normalisation.colour_constancy is {constancy!r}; "
            f"use one of {list(COLOUR_CONSTANCY)}."
        )
    return Normalisation(
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        colour_constancy=str(constancy),
    )


def _parse_label(raw: Any, source: Path) -> ClassLabel:
    code = raw.get("code") if isinstance(raw, Mapping) else None
    if not (
        isinstance(raw, Mapping)
        and isinstance(raw.get("key"), str)
        and isinstance(raw.get("name"), str)
        and isinstance(raw.get("malignant"), bool)
        and isinstance(code, Mapping)
        and all(isinstance(code.get(k), str) and code.get(k) for k in ("value", "scheme", "meaning"))
    ):
        raise BundleError(
            f"{source} has a bad label {raw!r}; each label needs key, name, malignant (bool) and "
            "code {value, scheme, meaning}."
        )
    return ClassLabel(
        key=raw["key"],
        name=raw["name"],
        malignant=raw["malignant"],
        code=CodedConcept(value=code["value"], scheme=code["scheme"], meaning=code["meaning"]),
    )


def _list(raw: Any, name: str, source: Path) -> list[Any]:
    if not isinstance(raw, list):
        raise BundleError(f"{source} dermnode.{name} must be a list, got {type(raw).__name__}.")
    return raw


def _per_label(raw: Any, name: str, n_labels: int, source: Path, *, positive: bool) -> tuple[float, ...]:
    """An optional per-label vector: empty, or ``n_labels`` finite numbers (all > 0 when ``positive``)."""
    values = _list(raw, name, source)
    if not values:
        return ()
    if len(values) != n_labels:
        raise BundleError(
            f"{source} dermnode.{name} has {len(values)} values but dermnode.labels lists {n_labels} labels; "
            "give one value per label, in label order (or an empty list)."
        )
    kind = "positive numbers" if positive else "numbers"
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in values
    ):
        raise BundleError(
            f"{source} dermnode.{name} must be empty or {n_labels} finite {kind} (one per label), got {raw!r}."
        )
    return tuple(float(v) for v in values)


def _probability(raw: Any, name: str, source: Path) -> float:
    if not isinstance(raw, int | float) or isinstance(raw, bool) or not 0.0 <= raw <= 1.0:
        raise BundleError(f"{source} dermnode.{name} must be a number in [0, 1], got {raw!r}.")
    return float(raw)
