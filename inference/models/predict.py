"""The one analysis implementation: classifier + segmenter bundles → :class:`LesionPrediction` per image.

The DICOM node, the evaluation command and the benchmarks all call :meth:`Analyzer.analyze`, so what is
measured is what is deployed. Masks and Grad-CAM maps come back on each source image's own pixel grid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from monai.visualize import GradCAM

from dermnode.kernel.errors import BundleError, InferenceError
from inference.models.bundle import Bundle, Task, load_bundle
from inference.models.prediction import LesionPrediction, decide
from inference.models.preprocess import (
    check_rgb,
    lesion_mask,
    lesion_probability,
    normalise_batch,
    prepare_image,
    resize_map,
    stack_prepared,
)

BUNDLES_DIR = Path(__file__).parents[1] / "bundles"
DEFAULT_CLASSIFIER = BUNDLES_DIR / "classifier"
DEFAULT_SEGMENTER = BUNDLES_DIR / "segmenter"

#: Test-time augmentation views: (flip rows, flip columns).
TTA_VIEWS = ((False, False), (False, True), (True, False))


@dataclass(frozen=True)
class AnalysisOptions:
    """``tta`` averages identity, horizontal and vertical flips; ``batch_size`` bounds memory per forward."""

    tta: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


class Analyzer:
    """Runs a classifier bundle and a segmenter bundle on RGB dermoscopy images."""

    def __init__(self, classifier: Bundle, segmenter: Bundle, options: AnalysisOptions | None = None) -> None:
        if classifier.metadata.task is not Task.CLASSIFICATION:
            raise BundleError(
                f"{classifier.path} is a {classifier.metadata.task.value} bundle; expected classification."
            )
        if segmenter.metadata.task is not Task.SEGMENTATION:
            raise BundleError(f"{segmenter.path} is a {segmenter.metadata.task.value} bundle; expected segmentation.")
        self.classifier = classifier
        self.segmenter = segmenter
        self.options = options or AnalysisOptions()
        meta = classifier.metadata
        self._melanoma = meta.label_index(meta.melanoma_key or "mel")
        self._malignant = np.array([label.malignant for label in meta.labels], dtype=bool)
        self._cam = self._grad_cam(classifier)

    @classmethod
    def from_bundles(
        cls,
        classifier: Path | None = None,
        segmenter: Path | None = None,
        device: str = "cpu",
        options: AnalysisOptions | None = None,
    ) -> Analyzer:
        """Load two bundle folders (None = the bundles shipped in ``inference/bundles/``) onto ``device``."""
        return cls(
            load_bundle(classifier or DEFAULT_CLASSIFIER, device),
            load_bundle(segmenter or DEFAULT_SEGMENTER, device),
            options,
        )

    def analyze(self, images: Sequence[npt.NDArray[np.uint8]], *, attention: bool = True) -> list[LesionPrediction]:
        """Classify and segment uint8 RGB (rows, columns, 3) images; one prediction per image, in order."""
        for i, image in enumerate(images):
            check_rgb(image, f"image {i}")
        results: list[LesionPrediction] = []
        step = self.options.batch_size
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            with self._out_of_memory_as_error(len(chunk)):
                results.extend(self._analyze_batch(chunk, attention))
        return results

    def classify(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Calibrated class probabilities (N, labels) with the configured TTA."""
        batch = self._batch(images, self.classifier)
        logits = view_logits(self.classifier.network, batch, self.options.tta)
        meta = self.classifier.metadata
        probs = calibrated_probabilities(logits, meta.temperature, meta.logit_bias)
        return probs.cpu().numpy().astype(np.float32)

    def segment_probabilities(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Lesion probability maps (N, H, W) at the segmenter's input size, TTA-averaged."""
        batch = self._batch(images, self.segmenter)
        with torch.inference_mode():
            views = TTA_VIEWS if self.options.tta else TTA_VIEWS[:1]
            prob = torch.zeros((len(images), *batch.shape[2:]), device=batch.device)
            for flip in views:
                out = lesion_probability(self.segmenter.network(_flip(batch, flip)).float())
                prob += _flip(out[:, None], flip)[:, 0]
            prob /= len(views)
        return prob.cpu().numpy().astype(np.float32)

    def attention_maps(
        self, images: Sequence[npt.NDArray[np.uint8]], classes: Sequence[int]
    ) -> list[npt.NDArray[np.float32]]:
        """Grad-CAM of ``classes[i]`` for image i, in [0, 1] at the classifier's input size."""
        if self._cam is None:
            raise BundleError(f"{self.classifier.path} names no attention_layer; Grad-CAM is unavailable.")
        batch = self._batch(images, self.classifier)
        maps: list[npt.NDArray[np.float32]] = [np.zeros(0, np.float32)] * len(images)
        wanted = np.asarray(classes)
        with torch.enable_grad():
            for cls_index in sorted(set(wanted.tolist())):
                rows = np.flatnonzero(wanted == cls_index)
                cam = self._cam(batch[torch.as_tensor(rows, device=batch.device)].clone(), class_idx=int(cls_index))
                for row, m in zip(rows, cam[:, 0].detach().cpu().numpy(), strict=True):
                    maps[int(row)] = m.astype(np.float32)
        self.classifier.network.zero_grad(set_to_none=True)
        return maps

    def _analyze_batch(self, images: Sequence[npt.NDArray[np.uint8]], attention: bool) -> list[LesionPrediction]:
        probs = self.classify(images)
        seg = self.segment_probabilities(images)
        meta, seg_meta = self.classifier.metadata, self.segmenter.metadata
        cams: list[npt.NDArray[np.float32]] | None = None
        if attention and self._cam is not None:
            cams = self.attention_maps(images, [int(i) for i in decide(probs, meta.decision_weights)])
        out = []
        for i, image in enumerate(images):
            shape = (int(image.shape[0]), int(image.shape[1]))
            att = None if cams is None else np.clip(resize_map(cams[i], shape), 0.0, 1.0).astype(np.float32)
            out.append(
                LesionPrediction(
                    labels=meta.labels,
                    probabilities=probs[i],
                    melanoma_probability=float(probs[i, self._melanoma]),
                    malignant_probability=float(min(1.0, probs[i, self._malignant].sum())),
                    operating_threshold=meta.operating_threshold,
                    mask=lesion_mask(seg[i], shape, seg_meta.mask_threshold),
                    attention=att,
                    classifier=meta.identity,
                    segmenter=seg_meta.identity,
                    decision_weights=meta.decision_weights,
                )
            )
        return out

    def _batch(self, images: Sequence[npt.NDArray[np.uint8]], bundle: Bundle) -> torch.Tensor:
        meta = bundle.metadata
        prepared = [prepare_image(image, meta.input_size, meta.normalisation.colour_constancy) for image in images]
        return normalise_batch(stack_prepared(prepared).to(bundle.device), meta.normalisation)

    @staticmethod
    def _grad_cam(bundle: Bundle) -> GradCAM | None:
        layer = bundle.metadata.network.attention_layer
        if layer is None:
            return None
        if layer not in dict(bundle.network.named_modules()):
            raise BundleError(
                f"{bundle.path} attention_layer {layer!r} is not a module of {bundle.metadata.network.name}; "
                "name one from network.named_modules() (e.g. the last feature block)."
            )
        return GradCAM(nn_module=bundle.network, target_layers=layer, postprocessing=_unit_range)

    @contextmanager
    def _out_of_memory_as_error(self, n: int) -> Iterator[None]:
        try:
            yield
        except torch.cuda.OutOfMemoryError as e:
            torch.cuda.empty_cache()
            raise InferenceError(
                f"Out of GPU memory analysing a batch of {n} image(s) on {self.classifier.device}; "
                "lower the batch size or use a larger device."
            ) from e


def view_logits(network: torch.nn.Module, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    """Classifier logits (views, N, classes) of a normalised batch for each TTA view (one view without TTA)."""
    views = TTA_VIEWS if tta else TTA_VIEWS[:1]
    with torch.inference_mode():
        return torch.stack([network(_flip(batch, flip)).float() for flip in views])


def calibrated_probabilities(
    logits: torch.Tensor, temperature: float | torch.Tensor, bias: Sequence[float] | torch.Tensor = ()
) -> torch.Tensor:
    """Mean over views of softmax(logits / temperature + bias): (views, N, C) → (N, C)."""
    scaled = logits / temperature
    if len(bias):
        scaled = scaled + torch.as_tensor(bias, dtype=scaled.dtype, device=scaled.device)
    return torch.softmax(scaled, dim=2).mean(dim=0)


def _flip(batch: torch.Tensor, flip: tuple[bool, bool]) -> torch.Tensor:
    dims = [d for d, on in zip((2, 3), flip, strict=True) if on]
    return torch.flip(batch, dims) if dims else batch


def _unit_range(cam: torch.Tensor) -> torch.Tensor:
    """Scale each map to [0, 1] with 1 = most attended (MONAI's default normaliser inverts it)."""
    flat = cam.detach().reshape(cam.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, *([1] * (cam.ndim - 1)))
    high = flat.max(dim=1).values.view(-1, *([1] * (cam.ndim - 1)))
    return (cam.detach() - low) / (high - low).clamp_min(1e-8)
