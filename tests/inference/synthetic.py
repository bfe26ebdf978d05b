"""A tiny synthetic data folder in labels.csv layout, for end-to-end train → evaluate tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from inference.models.lesion_classes import class_keys
from tests.factories import lesion_image, lesion_mask

# Lesion colour per class, so a network can tell some classes apart within a few steps.
TINTS = {"mel": (60, 40, 40), "nv": (150, 100, 70), "bkl": (170, 140, 90)}


def write_dataset(root: Path, per_class: int = 6, rows: int = 60, columns: int = 80) -> Path:
    """Write images/, masks/, labels.csv and validation_ids.txt (every third lesion) under ``root``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    keys = class_keys()
    fields = ["image_id", "diagnosis", "mask_path", "image_path", "source", "lesion_id"]
    validation = []
    with (root / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        n = 0
        for diagnosis in keys:
            for i in range(per_class if diagnosis in TINTS else 2):
                image_id = f"SYN_{n:04d}"
                shift = (int(rng.integers(-5, 6)), int(rng.integers(-5, 6)))
                image = lesion_image(rows, columns, seed=n)
                mask = lesion_mask(rows, columns, shift)
                tint = TINTS.get(diagnosis, (110, 70, 50))
                image[lesion_mask(rows, columns)] = (224, 172, 150)
                image[mask] = np.clip(np.array(tint) + rng.normal(0, 6, (int(mask.sum()), 3)), 0, 255)
                Image.fromarray(image).save(root / "images" / f"{image_id}.jpg", quality=95)
                Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{image_id}_segmentation.png")
                source = "SYN-A" if n % 2 else "SYN-B"
                writer.writerow(
                    {
                        "image_id": image_id,
                        "diagnosis": diagnosis,
                        "image_path": f"images/{image_id}.jpg",
                        "mask_path": f"masks/{image_id}_segmentation.png",
                        "source": source,
                        "lesion_id": f"LES_{n:04d}",
                    }
                )
                if i % 3 == 0:
                    validation.append(image_id)
                n += 1
    (root / "validation_ids.txt").write_text("# synthetic validation\n" + "\n".join(validation) + "\n")
    return root
