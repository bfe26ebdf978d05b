"""A small copy of a dataset folder, in the same labels.csv layout, to carry to a GPU machine.

Images become JPEG (quality 85 by default) no larger than ``max_side`` pixels, masks 1-bit PNG at
the same size; labels.csv keeps every column, with the paths and sizes updated. ``dermnode train``
reads the copy exactly like the original.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dermnode.kernel.errors import InferenceError
from inference.training.data import LABELS_FILE


@dataclass(frozen=True)
class TravelCopy:
    images: int
    masks: int
    bytes: int


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def make_travel_copy(data: Path, out: Path, max_side: int = 192, quality: int = 85) -> TravelCopy:
    """Write the small copy of ``data`` into ``out`` (created; must not hold a labels.csv already)."""
    source = data / LABELS_FILE
    if not source.is_file():
        raise InferenceError(f"{source} does not exist; point --data at a folder in labels.csv layout.")
    if (out / LABELS_FILE).exists():
        raise InferenceError(f"{out} already holds a {LABELS_FILE}; choose an empty --out folder.")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    with source.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    images = masks = 0
    for row in rows:
        image_id = row["image_id"]
        image_rel = (row.get("image_path") or "").strip() or f"images/{image_id}.jpg"
        with Image.open(data / image_rel) as im:
            size = _fit(im.size, max_side)
            im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(
                out / "images" / f"{image_id}.jpg", quality=quality, optimize=True
            )
        row["image_path"] = f"images/{image_id}.jpg"
        images += 1
        mask_rel = (row.get("mask_path") or "").strip()
        if mask_rel:
            with Image.open(data / mask_rel) as mask:
                mask.convert("L").resize(size, Image.Resampling.NEAREST).point(lambda v: 255 if v > 127 else 0) \
                    .convert("1").save(out / "masks" / f"{image_id}_segmentation.png", optimize=True)
            row["mask_path"] = f"masks/{image_id}_segmentation.png"
            masks += 1
        if "width" in row:
            row["width"], row["height"] = str(size[0]), str(size[1])
    for name in ("image_path", "mask_path"):
        if name not in fields:
            fields.append(name)
    with (out / LABELS_FILE).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for extra in ("SOURCES.md",):
        if (data / extra).is_file():
            shutil.copy2(data / extra, out / extra)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return TravelCopy(images, masks, total)
