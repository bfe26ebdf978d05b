"""The write-back self-check the worker runs before sending (inference/readback.py)."""

from __future__ import annotations

import pytest

from dermnode.kernel.errors import OutputError
from inference.outputs.readback import validate_readback
from inference.outputs.seg import build_segmentation
from inference.outputs.sr import build_report
from tests.factories import dermoscopy_dataset
from tests.inference.predictions import WHEN, make_prediction


def test_built_objects_pass_and_broken_ones_fail() -> None:
    source = dermoscopy_dataset()
    prediction = make_prediction()
    seg = build_segmentation(source, prediction, content_datetime=WHEN)
    report = build_report([source], [seg], [prediction], content_datetime=WHEN)
    assert validate_readback(seg).SOPInstanceUID == seg.SOPInstanceUID
    assert validate_readback(report).SOPInstanceUID == report.SOPInstanceUID

    report.ConceptNameCodeSequence[0].CodeValue = "126001"
    with pytest.raises(OutputError, match=rf"{report.SOPInstanceUID}.*126000"):
        validate_readback(report)

    del seg.SegmentSequence
    with pytest.raises(OutputError, match=rf"{seg.SOPInstanceUID} does not read back"):
        validate_readback(seg)

    with pytest.raises(OutputError, match=rf"{source.SOPInstanceUID} has SOP Class .* does not send"):
        validate_readback(source)
