"""Fixed data splits, stored as image id lists (``validation_ids.txt``)."""
