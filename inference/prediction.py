"""What the models say about one image: the contract between inference and the output builders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class CodedConcept:
    """A coded term (value, scheme designator, meaning), e.g. SCT 1162635006 "Malignant melanoma"."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class ClassLabel:
    """One output class of a classifier bundle: short key (HAM10000 code), display name and code."""

    key: str
    name: str
    code: CodedConcept
    malignant: bool


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a result: bundle name and version, and whether it was trained at all."""

    name: str
    version: str
    trained: bool

    @property
    def label(self) -> str:
        """Human-readable ``name version`` with an UNTRAINED marker where it applies."""
        suffix = "" if self.trained else " (UNTRAINED placeholder weights)"
        return f"{self.name} {self.version}{suffix}"


@dataclass(frozen=True)
class LesionPrediction:
    """Classification + segmentation of one dermoscopy image, at the source image's resolution.

    ``probabilities`` is aligned with ``labels``; ``mask`` is a boolean (rows, columns) array in the
    source pixel grid (no flip, no shift); ``attention`` is a float32 (rows, columns) map in [0, 1]
    (Grad-CAM of the predicted class) or None when not computed.
    """

    labels: tuple[ClassLabel, ...]
    probabilities: npt.NDArray[np.float32]
    melanoma_probability: float
    malignant_probability: float
    operating_threshold: float
    mask: npt.NDArray[np.bool_]
    attention: npt.NDArray[np.float32] | None
    classifier: ModelIdentity
    segmenter: ModelIdentity

    def __post_init__(self) -> None:
        if self.probabilities.shape != (len(self.labels),):
            raise ValueError(
                f"probabilities has shape {self.probabilities.shape}, expected ({len(self.labels)},) "
                "to match the labels"
            )
        if self.mask.ndim != 2:
            raise ValueError(f"mask must be 2-D (rows, columns), got shape {self.mask.shape}")
        if self.attention is not None and self.attention.shape != self.mask.shape:
            raise ValueError(
                f"attention shape {self.attention.shape} differs from mask shape {self.mask.shape}"
            )

    @property
    def predicted(self) -> ClassLabel:
        """The most probable class."""
        return self.labels[int(np.argmax(self.probabilities))]

    @property
    def suspicious(self) -> bool:
        """True when the melanoma probability reaches the bundle's operating threshold."""
        return self.melanoma_probability >= self.operating_threshold

    def ranked(self, top: int | None = None) -> list[tuple[ClassLabel, float]]:
        """Classes by decreasing probability (the differential), optionally only the first ``top``."""
        order = np.argsort(-self.probabilities, kind="stable")
        ranked = [(self.labels[int(i)], float(self.probabilities[int(i)])) for i in order]
        return ranked if top is None else ranked[:top]
