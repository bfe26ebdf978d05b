"""The dermoscopy training data in ``labels.csv`` layout, its split by lesion, and packed caches.

``labels.csv`` columns used: image_id, diagnosis (HAM10000 codes), image_path, mask_path (optional),
source, lesion_id (optional). Images of one lesion always fall on the same side of a split; images
without a lesion id are their own group. The fixed validation split lives in ``inference/training/splits/``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from dermnode.kernel.errors import InferenceError
from inference.models.lesion_classes import class_keys
from inference.models.preprocess import prepare_image, resize_map
from inference.training.splits import VALIDATION_IDS

LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("image_id", "diagnosis")
#: Optional columns and what stands in for them: images/<image_id>.jpg, source "unknown", no mask.


@dataclass(frozen=True)
class Record:
    """One labelled image of the data folder (paths are absolute)."""

    image_id: str
    diagnosis: str
    image_path: Path
    mask_path: Path | None
    source: str
    lesion_id: str | None

    @property
    def group(self) -> str:
        """The unit of splitting: the lesion, or the image itself when the lesion is unknown."""
        return self.lesion_id or f"image:{self.image_id}"

    @property
    def label(self) -> int:
        return class_keys().index(self.diagnosis)


def read_records(data_dir: Path) -> list[Record]:
    """Read ``<data_dir>/labels.csv``; every diagnosis must be one of the HAM10000 codes."""
    path = Path(data_dir) / LABELS_FILE
    if not path.is_file():
        raise InferenceError(f"{path} does not exist; point --data at a folder in labels.csv layout.")
    keys = class_keys()
    records = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InferenceError(f"{path} lacks the columns {missing}; it needs {list(REQUIRED_COLUMNS)}.")
        for line, row in enumerate(reader, start=2):
            if row["diagnosis"] not in keys:
                raise InferenceError(f"{path} line {line}: diagnosis {row['diagnosis']!r} is not one of {list(keys)}.")
            mask = (row.get("mask_path") or "").strip()
            records.append(
                Record(
                    image_id=row["image_id"],
                    diagnosis=row["diagnosis"],
                    image_path=Path(data_dir) / ((row.get("image_path") or "").strip()
                                                 or f"images/{row['image_id']}.jpg"),
                    mask_path=Path(data_dir) / mask if mask else None,
                    source=(row.get("source") or "").strip() or "unknown",
                    lesion_id=(row.get("lesion_id") or "").strip() or None,
                )
            )
    return records


def split_by_lesion(records: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Seeded split into (rest, held-out ≈ ``fraction``), by lesion, stratified by source and diagnosis."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[record.group].append(record)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in sorted(groups):
        first = groups[name][0]
        strata[(first.source, first.diagnosis)].append(name)
    rng = random.Random(seed)
    held: set[str] = set()
    for stratum in sorted(strata):
        names = strata[stratum]
        rng.shuffle(names)
        held.update(names[: round(fraction * len(names))])
    rest = [r for r in records if r.group not in held]
    out = [r for r in records if r.group in held]
    return rest, out


def write_ids(path: Path, records: Iterable[Record], header: str) -> None:
    """Write image ids one per line, sorted, under a ``#`` comment header."""
    ids = sorted(r.image_id for r in records)
    lines = [f"# {line}" for line in header.splitlines()] + ids
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_ids(path: Path = VALIDATION_IDS) -> list[str]:
    """Image ids of a split file (comments and blank lines skipped)."""
    if not path.is_file():
        raise InferenceError(f"{path} does not exist; create it with `python -m inference.training.splits`.")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def partition(records: Sequence[Record], ids: Iterable[str]) -> tuple[list[Record], list[Record]]:
    """(records not in ``ids``, records in ``ids``), refusing a split that shares a lesion."""
    wanted = set(ids)
    inside = [r for r in records if r.image_id in wanted]
    outside = [r for r in records if r.image_id not in wanted]
    shared = {r.group for r in inside} & {r.group for r in outside}
    if shared:
        raise InferenceError(
            f"The split puts {len(shared)} lesion(s) on both sides (e.g. {sorted(shared)[:3]}); "
            "regenerate it with split_by_lesion."
        )
    return outside, inside


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """Decode an image file to uint8 RGB (rows, columns, 3)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise InferenceError(f"{path} could not be decoded as an image ({e}).") from e


def read_mask(path: Path) -> npt.NDArray[np.bool_]:
    """Decode a 0/255 mask PNG to a boolean (rows, columns) array."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8) > 127
    except OSError as e:
        raise InferenceError(f"{path} could not be decoded as a mask ({e}).") from e


@dataclass(frozen=True)
class Pack:
    """Decoded, colour-balanced, resized images (N, H, W, 3) uint8 with labels and soft masks (N, H, W)."""

    ids: tuple[str, ...]
    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    masks: npt.NDArray[np.uint8] | None


def pack_records(
    records: Sequence[Record],
    size: tuple[int, int],
    colour_constancy: str,
    cache_dir: Path | None,
    with_masks: bool = False,
    progress: Callable[[Iterable[Record]], Iterable[Record]] | None = None,
) -> Pack:
    """Decode ``records`` once through :func:`prepare_image` (the inference path) and cache the arrays."""
    if with_masks and any(r.mask_path is None for r in records):
        raise InferenceError("Segmentation packing needs a mask for every record; filter records with masks first.")
    key = hashlib.sha256(
        json.dumps(
            [[r.image_id, str(r.image_path)] for r in records] + [list(size), colour_constancy, with_masks]
        ).encode()
    ).hexdigest()[:16]
    cached = None if cache_dir is None else Path(cache_dir) / f"pack-{size[0]}x{size[1]}-{key}.npz"
    if cached is not None and cached.is_file():
        with np.load(cached) as z:
            return Pack(tuple(str(x) for x in z["ids"]), z["images"], z["labels"], z["masks"] if with_masks else None)
    images = np.empty((len(records), *size, 3), np.uint8)
    masks = np.empty((len(records), *size), np.uint8) if with_masks else None
    iterator = progress(records) if progress else records
    for i, record in enumerate(iterator):
        images[i] = prepare_image(read_rgb(record.image_path), size, colour_constancy)
        if masks is not None and record.mask_path is not None:
            soft = resize_map(read_mask(record.mask_path).astype(np.float32), size)
            masks[i] = np.clip(np.rint(soft * 255), 0, 255).astype(np.uint8)
    labels = np.array([r.label for r in records], np.int64)
    ids = tuple(r.image_id for r in records)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, ids=np.array(ids), images=images, labels=labels, masks=masks if masks is not None else 0)
        tmp.replace(cached)
    return Pack(ids, images, labels, masks)
