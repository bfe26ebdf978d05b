"""The one entry point from a study's predictions to its DICOM outputs, each read back before it is returned.

Per image a BINARY lesion SEG (and, with attention, a FRACTIONAL Grad-CAM SEG and a BINARY SEG of its top
10/25/50 % levels); per study one TID 1500 SR that references the lesion SEGs. Nothing is returned that
highdicom's own reader rejects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom import Dataset

from inference.models.prediction import LesionPrediction
from inference.outputs.hd_compat import complete_patient_and_study
from inference.outputs.readback import validate_readback
from inference.outputs.seg import (
    build_attention_levels_segmentation,
    build_attention_segmentation,
    build_segmentation,
)
from inference.outputs.sr import NotAnalysed, build_report


@dataclass(frozen=True)
class OutputObject:
    """One built object and its kind: ``seg``, ``attention-seg``, ``attention-levels-seg`` or ``sr`` (also its send
    order)."""

    kind: str
    dataset: Dataset


def build_outputs(
    sources: Sequence[Dataset],
    images: Sequence[npt.NDArray[np.uint8]],
    predictions: Sequence[LesionPrediction],
    *,
    uid_prefix: str,
    content_datetime: dt.datetime,
    attention: bool = True,
    previous_reports: Sequence[Dataset] | None = None,
    not_analysed: Sequence[NotAnalysed] = (),
) -> list[OutputObject]:
    """SEGs, attention SEGs (where a prediction has attention and ``attention`` is on) and the SR, validated."""
    for source in sources:
        complete_patient_and_study(source)
    segs = [
        build_segmentation(ds, p, uid_prefix=uid_prefix, content_datetime=content_datetime)
        for ds, p in zip(sources, predictions, strict=True)
    ]
    objects = [OutputObject("seg", s) for s in segs]
    if attention:
        with_attention = [(ds, p) for ds, p in zip(sources, predictions, strict=True) if p.attention is not None]
        objects += [
            OutputObject(
                "attention-seg",
                build_attention_segmentation(ds, p, uid_prefix=uid_prefix, content_datetime=content_datetime),
            )
            for ds, p in with_attention
        ]
        objects += [
            OutputObject(
                "attention-levels-seg",
                build_attention_levels_segmentation(ds, p, uid_prefix=uid_prefix, content_datetime=content_datetime),
            )
            for ds, p in with_attention
        ]
    report = build_report(
        sources, segs, predictions, uid_prefix=uid_prefix, content_datetime=content_datetime,
        rgb_images=list(images), previous_versions=list(previous_reports) if previous_reports else None,
        not_analysed=not_analysed,
    )
    objects.append(OutputObject("sr", report))
    for obj in objects:
        validate_readback(obj.dataset)  # never send what our own reader rejects
    return objects
