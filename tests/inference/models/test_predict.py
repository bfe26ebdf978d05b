from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermnode.kernel.errors import BundleError, InferenceError
from inference.models.predict import AnalysisOptions, Analyzer
from tests.factories import lesion_image


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.from_bundles()


def test_analyze_returns_source_resolution_outputs(analyzer: Analyzer) -> None:
    images = [lesion_image(96, 128, seed=1), lesion_image(150, 200, seed=2), lesion_image(61, 47, seed=3)]
    results = analyzer.analyze(images)
    assert len(results) == 3
    for image, result in zip(images, results, strict=True):
        assert result.mask.shape == image.shape[:2] and result.mask.dtype == bool
        assert result.attention is not None and result.attention.shape == image.shape[:2]
        assert result.attention.dtype == np.float32
        assert result.attention.min() >= 0.0 and result.attention.max() <= 1.0
        assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        p = dict(zip([x.key for x in result.labels], result.probabilities, strict=True))
        assert result.melanoma_probability == pytest.approx(p["mel"])
        assert result.malignant_probability == pytest.approx(p["mel"] + p["bcc"] + p["akiec"], abs=1e-6)
        assert result.classifier.trained and "UNTRAINED" not in result.classifier.label


def test_batching_and_tta_options(analyzer: Analyzer) -> None:
    images = [lesion_image(96, 128, seed=i) for i in range(5)]
    full = analyzer.analyze(images, attention=False)
    small = Analyzer(analyzer.classifier, analyzer.segmenter, AnalysisOptions(batch_size=2)).analyze(
        images, attention=False
    )
    assert all(r.attention is None for r in full)
    for a, b in zip(full, small, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert np.array_equal(a.mask, b.mask)
    plain = Analyzer(analyzer.classifier, analyzer.segmenter, AnalysisOptions(tta=False)).classify(images[:1])
    assert plain.shape == (1, 7)


def test_bad_image_is_named(analyzer: Analyzer) -> None:
    with pytest.raises(InferenceError, match=r"image 1 must be a uint8 RGB array"):
        analyzer.analyze([lesion_image(), np.zeros((8, 8), np.uint8)])


def test_empty_input_gives_empty_output(analyzer: Analyzer) -> None:
    assert analyzer.analyze([]) == []


def test_swapped_bundles_are_rejected(analyzer: Analyzer) -> None:
    with pytest.raises(BundleError, match=r"is a segmentation bundle; expected classification"):
        Analyzer(analyzer.segmenter, analyzer.classifier)


def test_cuda_without_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InferenceError, match=r"torch sees no CUDA GPU"):
        Analyzer.from_bundles(device="cuda")


def test_explicit_paths(classifier_copy: Path, segmenter_copy: Path) -> None:
    analyzer = Analyzer.from_bundles(classifier_copy, segmenter_copy)
    assert analyzer.classifier.path == classifier_copy


def test_out_of_memory_becomes_inference_error(analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def explode(images: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    cleared = []
    monkeypatch.setattr(analyzer, "classify", explode)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: cleared.append(True))
    with pytest.raises(InferenceError, match=r"Out of GPU memory analysing a batch of 1 image"):
        analyzer.analyze([lesion_image()])
    assert cleared == [True]
