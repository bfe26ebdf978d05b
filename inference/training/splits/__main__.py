"""Regenerate the fixed validation split: ``python -m inference.training.splits --data DIR``.

Only needed if the data folder changes; the committed list is what every model is measured on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.training.data import VALIDATION_IDS, read_records, split_by_lesion, write_ids

SEED = 20261125
FRACTION = 0.2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=VALIDATION_IDS)
    args = parser.parse_args()
    _, validation = split_by_lesion(read_records(args.data), FRACTION, SEED)
    write_ids(
        args.out,
        validation,
        f"dermnode fixed validation split: never train on these images.\n"
        f"{FRACTION:.0%} of lesions (lesion_id, else image_id), stratified by source and diagnosis, "
        f"seed {SEED}.\nMade by: python -m inference.training.splits --data <labels.csv folder>",
    )
    print(f"wrote {len(validation)} validation ids to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
