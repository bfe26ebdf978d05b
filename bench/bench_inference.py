"""CPU latency of the shipped bundles through Analyzer: classify + segment (+ Grad-CAM) per image.

Run: ``python -m bench.bench_inference --data ../shared/data/dermoscopy --n 64 --threads 2``
(images from the fixed validation split; synthetic 200x150 images when --data is not given). Give
``--classifier BUNDLE`` more than once to time several classifier bundles side by side in one run
(default: the shipped one), and as many ``--segmenter BUNDLE`` to pair with them in order (default: the
shipped segmenter for each), e.g. the shipped pair against a previous release's pair.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from inference.evaluation.evaluate import validation_records
from inference.models.predict import DEFAULT_CLASSIFIER, DEFAULT_SEGMENTER, AnalysisOptions, Analyzer
from inference.training.data import VALIDATION_IDS, read_rgb
from tests.factories import lesion_image


def timed(analyzer: Analyzer, images: list[np.ndarray], batch: int, attention: bool, repeats: int) -> float:
    """Median seconds per image over ``repeats`` passes in batches of ``batch``."""
    analyzer.analyze(images[:batch], attention=attention)  # warm-up
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        for start in range(0, len(images), batch):
            analyzer.analyze(images[start : start + batch], attention=attention)
        runs.append((time.perf_counter() - began) / len(images))
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classifier", type=Path, action="append", help="classifier bundle (repeatable)")
    parser.add_argument("--segmenter", type=Path, action="append", help="segmenter bundle for each --classifier")
    args = parser.parse_args()
    classifiers = args.classifier or [DEFAULT_CLASSIFIER]
    segmenters = args.segmenter or [DEFAULT_SEGMENTER] * len(classifiers)
    if len(segmenters) != len(classifiers):
        parser.error(f"give one --segmenter per --classifier ({len(classifiers)}), or none")
    torch.set_num_threads(args.threads)
    if args.data:
        images = [
            read_rgb(r.image_path)
            for r in validation_records(args.data, VALIDATION_IDS, None)[0]
            if r.source == "HAM10000"
        ][: args.n]
    else:
        images = [lesion_image(150, 200, seed=i) for i in range(args.n)]
    results: dict[str, dict[str, float]] = {}
    for bundle, segmenter in zip(classifiers, segmenters, strict=True):
        times: dict[str, float] = {}
        for tta in (False, True):
            analyzer = Analyzer.from_bundles(bundle, segmenter, options=AnalysisOptions(tta=tta))
            for batch in (1, 16):
                for attention in (False, True):
                    key = f"tta={tta} batch={batch} attention={attention}"
                    times[key] = round(1000 * timed(analyzer, images, batch, attention, args.repeats), 2)
                    print(f"{analyzer.classifier.metadata.identity.label} {key}: {times[key]:.2f} ms/image", flush=True)
        pair = f"{analyzer.classifier.metadata.identity.label} + {analyzer.segmenter.metadata.identity.label}"
        results[f"{pair} ({bundle}, {segmenter})"] = times
    print(
        json.dumps(
            {
                "cpu": platform.processor() or platform.machine(),
                "threads": args.threads,
                "images": len(images),
                "ms_per_image": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
