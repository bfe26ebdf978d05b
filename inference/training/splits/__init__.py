"""Fixed data splits, stored as image id lists (``validation_ids.txt``); importing this loads no torch."""

from pathlib import Path

SPLITS_DIR = Path(__file__).parent
#: The fixed validation split: image ids never trained on (split by lesion).
VALIDATION_IDS = SPLITS_DIR / "validation_ids.txt"
