"""What one evaluation run collected per image; the report (metrics, CSV, plots) is computed from it."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from inference.training.data import Record

#: The worst-segmented images kept (with their predicted masks) for the report's picture.
WORST_CASES = 12


@dataclass
class Outcomes:
    """Per-image results collected during evaluation."""

    records: list[Record]
    probabilities: npt.NDArray[np.float32]
    #: Index of the called class per image (the bundle's decision rule, what the SR reports as the finding).
    calls: npt.NDArray[np.int64]
    dice: list[float | None]
    jaccard: list[float | None]
    #: Predicted lesion masks of the worst-segmented images, by index into ``records``.
    worst_masks: dict[int, npt.NDArray[np.bool_]] = field(default_factory=dict)
    #: Share of Grad-CAM mass inside the lesion mask (None: no mask or no attention layer), plain and vignetted.
    attention_in_lesion: list[float | None] = field(default_factory=list)
    attention_in_lesion_vignette: list[float | None] = field(default_factory=list)
    #: Ground-truth masks that look inverted (:mod:`inference.training.mask_quality`): kept in Dice, also
    #: reported without.
    inverted_mask: list[bool] = field(default_factory=list)


class WorstCases:
    """Keeps the predicted masks of the ``size`` lowest-Dice images seen so far (bounded memory)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._heap: list[tuple[float, int, npt.NDArray[np.bool_]]] = []  # max-heap on Dice via negation

    def offer(self, dice: float, index: int, mask: npt.NDArray[np.bool_]) -> None:
        item = (-dice, -index, mask)
        if len(self._heap) < self._size:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def masks(self) -> dict[int, npt.NDArray[np.bool_]]:
        return {-neg_index: mask for _, neg_index, mask in self._heap}
