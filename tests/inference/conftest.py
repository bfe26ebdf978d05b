"""Fixtures for inference tests: copies of the shipped bundles that a test may break."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference.models.predict import DEFAULT_CLASSIFIER, DEFAULT_SEGMENTER


@pytest.fixture
def classifier_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_CLASSIFIER, tmp_path / "classifier"))


@pytest.fixture
def segmenter_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT_SEGMENTER, tmp_path / "segmenter"))
