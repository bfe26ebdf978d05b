"""Synthetic predictions for the output-builder tests: HAM10000 labels and a prediction on the factory image."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from inference.models.prediction import ClassLabel, CodedConcept, LesionPrediction, ModelIdentity
from tests.factories import lesion_mask

WHEN = datetime(2026, 11, 25, 12, 0, 0)


def ham_labels() -> tuple[ClassLabel, ...]:
    """The 7 HAM10000 classes, for tests only: the real list ships in the model bundle's metadata.

    Same codes as the shipped classifier bundle. mel, akiec and vasc are in pydicom's SNOMED CT
    dictionary; the bcc, nv, bkl and df codes are NOT in pydicom's dictionaries (unverified here).
    """
    return (
        ClassLabel("akiec", "Actinic keratosis", CodedConcept("201101007", "SCT", "Actinic keratosis"), True),
        ClassLabel(
            "bcc", "Basal cell carcinoma", CodedConcept("254701007", "SCT", "Basal cell carcinoma of skin"), True
        ),
        ClassLabel("bkl", "Benign keratosis", CodedConcept("201100008", "SCT", "Seborrheic keratosis"), False),
        ClassLabel("df", "Dermatofibroma", CodedConcept("402802007", "SCT", "Dermatofibroma"), False),
        ClassLabel("mel", "Melanoma", CodedConcept("1162635006", "SCT", "Malignant melanoma"), True),
        ClassLabel("nv", "Melanocytic nevus", CodedConcept("400096001", "SCT", "Melanocytic nevus"), False),
        ClassLabel("vasc", "Vascular lesion", CodedConcept("400210000", "SCT", "Hemangioma"), False),
    )


def make_prediction(
    labels: tuple[ClassLabel, ...] | None = None,
    *,
    rows: int = 96,
    columns: int = 128,
    trained: bool = True,
    version: str = "1.0.0",
    probabilities: tuple[float, ...] = (0.02, 0.03, 0.05, 0.01, 0.62, 0.25, 0.02),
    threshold: float = 0.4,
    attention: bool = True,
) -> LesionPrediction:
    """A prediction with melanoma on top, the factory's lesion as mask and a smooth attention map."""
    labels = labels or ham_labels()
    probs = np.asarray(probabilities, dtype=np.float32)
    malignant = float(sum(p for label, p in zip(labels, probs, strict=True) if label.malignant))
    melanoma = float(probs[[label.key for label in labels].index("mel")])
    yy, xx = np.mgrid[0:rows, 0:columns]
    heat = np.exp(-(((yy - rows * 0.45) / rows) ** 2 + ((xx - columns * 0.55) / columns) ** 2) * 8)
    return LesionPrediction(
        labels=labels,
        probabilities=probs,
        melanoma_probability=melanoma,
        malignant_probability=malignant,
        operating_threshold=threshold,
        mask=lesion_mask(rows, columns),
        attention=heat.astype(np.float32) if attention else None,
        classifier=ModelIdentity("ham10000-classifier", version, trained),
        segmenter=ModelIdentity("lesion-segmenter", version, trained),
    )
