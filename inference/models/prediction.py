"""What the models say about one image: the contract between inference and the output builders."""

from __future__ import annotations

from collections.abc import Sequence
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

    ``probabilities`` is aligned with ``labels`` (calibrated: they estimate how often each class is right
    on data like the training data); ``decision_weights`` turn them into the called class (:func:`decide`);
    ``mask`` is a boolean (rows, columns) array in the source pixel grid (no flip, no shift); ``attention``
    is a float32 (rows, columns) map in [0, 1] (Grad-CAM of the called class) or None when not computed.
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
    decision_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.probabilities.shape != (len(self.labels),):
            raise ValueError(
                f"probabilities has shape {self.probabilities.shape}, expected ({len(self.labels)},) "
                "to match the labels"
            )
        if self.decision_weights and len(self.decision_weights) != len(self.labels):
            raise ValueError(
                f"{len(self.decision_weights)} decision weights for {len(self.labels)} labels; give one per label"
            )
        if self.mask.ndim != 2:
            raise ValueError(f"mask must be 2-D (rows, columns), got shape {self.mask.shape}")
        if self.attention is not None and self.attention.shape != self.mask.shape:
            raise ValueError(
                f"attention shape {self.attention.shape} differs from mask shape {self.mask.shape}"
            )

    @property
    def predicted(self) -> ClassLabel:
        """The called class: the most probable one after the bundle's decision weights (see :func:`decide`)."""
        return self.labels[int(decide(self.probabilities[None, :], self.decision_weights)[0])]

    @property
    def suspicious(self) -> bool:
        """True when the melanoma probability reaches the bundle's operating threshold."""
        return self.melanoma_probability >= self.operating_threshold

    def decision_note(self) -> str | None:
        """Why the called class is not the most probable one, in words a reader can check; None when it is."""
        called = self.predicted
        top, p_top = self.ranked(1)[0]
        if called is top:
            return None
        i, j = self.labels.index(called), self.labels.index(top)
        w_called, w_top = self.decision_weights[i], self.decision_weights[j]
        return (
            f"Called {called.name} although {top.name} is more probable ({self.probabilities[i]:.2f} vs "
            f"{p_top:.2f}): the call is the class with the largest probability x decision weight "
            f"({self.probabilities[i]:.2f} x {w_called:.3g} = {self.probabilities[i] * w_called:.3g} vs "
            f"{p_top:.2f} x {w_top:.3g} = {p_top * w_top:.3g}), i.e. the model's choice if all classes were "
            "equally common; the probabilities reflect the training data's class mix, where nevi dominate."
        )

    def ranked(self, top: int | None = None) -> list[tuple[ClassLabel, float]]:
        """Classes by decreasing probability (the differential), optionally only the first ``top``."""
        order = np.argsort(-self.probabilities, kind="stable")
        ranked = [(self.labels[int(i)], float(self.probabilities[int(i)])) for i in order]
        return ranked if top is None else ranked[:top]


def decide(probabilities: npt.ArrayLike, weights: Sequence[float] = ()) -> npt.NDArray[np.int64]:
    """The called class of each row of ``probabilities`` (N, C): argmax of probability x decision weight.

    Probabilities calibrated to the training data's class frequencies favour the common classes (nevi); a
    bundle's decision weights (≈ 1 / each class's fitted prevalence factor) make the call as if every class
    were equally common, the rule that balanced accuracy rewards. No weights: plain argmax.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if len(weights):
        probs = probs * np.asarray(weights, dtype=np.float64)
    return np.asarray(probs.argmax(axis=1), dtype=np.int64)
