"""`dermnode evaluate` on any labelled folder: an external set with only image_id and diagnosis."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from dermnode.cli.models import main
from tests.factories import lesion_image


def test_external_folder_with_minimal_labels_is_evaluated_whole(tmp_path: Path) -> None:
    data = tmp_path / "external"
    (data / "images").mkdir(parents=True)
    rows = ["image_id,diagnosis"]
    for i, dx in enumerate(["mel", "mel", "nv", "nv", "bkl", "bcc"]):
        Image.fromarray(lesion_image(60, 80, seed=i)).save(data / "images" / f"EXT_{i}.jpg", quality=90)
        rows.append(f"EXT_{i},{dx}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--out", str(out), "--no-plots", "--no-tta"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 6
    assert metrics["selection"].startswith("all images (none is listed")
    assert set(metrics["by_source"]) == {"unknown"}
    assert 0.0 <= metrics["melanoma_auc"] <= 1.0
