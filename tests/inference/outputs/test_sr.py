"""TID 1500 report (inference/sr.py): validated with dciodvfy, read back with highdicom and compared."""

from __future__ import annotations

import dataclasses
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import Dataset

from dermnode.kernel.errors import OutputError
from inference.models.prediction import LesionPrediction
from inference.outputs.contour import lesion_outline
from inference.outputs.conventions import REPORT_SERIES_NUMBER
from inference.outputs.readback import encode, validate_readback
from inference.outputs.seg import build_segmentation
from inference.outputs.sr import build_report, report_uids
from tests.dciodvfy import dciodvfy_problems
from tests.factories import dermoscopy_dataset, lesion_image, lesion_mask
from tests.inference.predictions import WHEN, make_prediction

STUDY = "1.2.826.0.1.3680043.8.498.4242"


def _study(n: int = 2, pixel_spacing_mm: float | None = 0.02) -> list[Dataset]:
    return [
        dermoscopy_dataset(
            study_uid=STUDY,
            sop_instance_uid=f"{STUDY}.{i + 1}",
            instance_number=i + 1,
            seed=i,
            pixel_spacing_mm=pixel_spacing_mm,
        )
        for i in range(n)
    ]


def _report(
    sources: list[Dataset], predictions: list[LesionPrediction] | None = None, **kwargs: object
) -> tuple[hd.sr.Comprehensive3DSR, list[hd.seg.Segmentation]]:
    predictions = predictions or [make_prediction() for _ in sources]
    segs = [build_segmentation(s, p, content_datetime=WHEN) for s, p in zip(sources, predictions, strict=True)]
    return build_report(sources, segs, predictions, content_datetime=WHEN, **kwargs), segs  # type: ignore[arg-type]


def _items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _named(ds: Dataset, value: str) -> list[Dataset]:
    return [i for i in _items(ds) if i.ConceptNameCodeSequence[0].CodeValue == value]


def _modifier(item: Dataset) -> str:
    """Code value of the "Associated finding" concept modifier of a NUM item."""
    (mod,) = [c for c in item.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == "246090004"]
    return str(mod.ConceptCodeSequence[0].CodeValue)


def _num(item: Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, list[Dataset], list[hd.seg.Segmentation]]:
    sources = _study(2)
    report, segs = _report(sources)
    path = tmp_path / "sr.dcm"
    report.save_as(path, enforce_file_format=True)
    return path, sources, segs


def test_report_passes_dciodvfy_and_dsrdump(written: tuple[Path, list[Dataset], list[hd.seg.Segmentation]]) -> None:
    path, _, _ = written
    assert dciodvfy_problems(path) == []
    if shutil.which("dsrdump") is None:
        pytest.skip("DCMTK dsrdump is not installed")
    done = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    complaints = [line for line in done.stderr.splitlines() if line.startswith("E:")]
    assert complaints == []
    assert "UNTRAINED" not in done.stdout


def test_report_reads_back_with_the_predictions(
    written: tuple[Path, list[Dataset], list[hd.seg.Segmentation]],
) -> None:
    path, sources, segs = written
    sr = hd.sr.srread(path)
    validate_readback(sr)
    prediction = make_prediction()
    assert sr.SeriesNumber == REPORT_SERIES_NUMBER
    assert "AI-generated, not for diagnostic use" in sr.SeriesDescription
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    assert (sr.PatientID, sr.StudyInstanceUID, sr.AccessionNumber) == (
        sources[0].PatientID,
        STUDY,
        sources[0].AccessionNumber,
    )
    procedure = _named(sr, "121058")[0].ConceptCodeSequence[0]
    assert (procedure.CodeValue, procedure.CodingSchemeDesignator) == ("446078004", "SCT")
    library = [
        i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for i in _items(_named(sr, "111028")[0])
        if i.ValueType == "IMAGE"
    ]
    assert library == [s.SOPInstanceUID for s in sources]
    assert {i.ConceptCodeSequence[0].CodeValue for i in _named(sr, "121139")} == {"DMS"}

    report = hd.sr.MeasurementReport.from_sequence([sr])
    image_groups = report.get_image_measurement_groups()
    roi_groups = report.get_planar_roi_measurement_groups()
    assert len(image_groups) == 2 and len(roi_groups) == 4
    for group in [*image_groups, *roi_groups]:
        assert group.tracking_uid and group.tracking_identifier

    first = image_groups[0]
    assert first.finding_type is not None
    assert first.finding_type.value == "1162635006"  # melanoma has the highest probability
    probabilities = {
        _modifier(i): _num(i)
        for i in _items(first[0])
        if i.ConceptNameCodeSequence[0].CodeValue == "122157"
        and i.ValueType == "NUM"
        and i.RelationshipType == "CONTAINS"
    }
    expected = {
        label.code.value: round(float(p), 6)
        for label, p in zip(prediction.labels, prediction.probabilities, strict=True)
    }
    assert probabilities == pytest.approx(expected)
    cancer = {_modifier(i): _num(i) for i in _items(first[0]) if i.ConceptNameCodeSequence[0].CodeValue == "111047"}
    assert cancer == pytest.approx(
        {"21594007": prediction.malignant_probability, "1162635006": prediction.melanoma_probability}
    )
    (threshold,) = [i for i in _items(first[0]) if i.ConceptNameCodeSequence[0].CodeValue == "122411"]
    assert _num(threshold) == pytest.approx(0.4)
    differential = [i for i in _items(first[0]) if i.ConceptNameCodeSequence[0].CodeValue == "111023"]
    assert [i.ConceptCodeSequence[0].CodeValue for i in differential] == [
        label.code.value for label, _ in prediction.ranked(3)
    ]
    assert _num(differential[0].ContentSequence[0]) == pytest.approx(0.62)
    (call,) = [i for i in _items(first[0]) if i.ConceptNameCodeSequence[0].CodeValue == "MELCALL"]
    assert call.ConceptCodeSequence[0].CodeValue == "10828004"  # Positive: 0.62 >= 0.4

    outline_group, seg_group = roi_groups[0], roi_groups[1]  # the outline leads: OHIF labels it
    reference = seg_group.referenced_segmentation_frame
    assert reference is not None
    seg_item = reference[0].ReferencedSOPSequence[0]
    assert seg_item.ReferencedSOPInstanceUID == segs[0].SOPInstanceUID
    assert seg_item.ReferencedSegmentNumber == 1
    assert "ReferencedFrameNumber" not in seg_item
    assert seg_group.tracking_uid == segs[0].SegmentSequence[0].TrackingUID

    region = outline_group.roi
    assert region is not None and region.graphic_type.value == "POLYLINE"
    assert np.allclose(region.value, lesion_outline(lesion_mask(96, 128)))
    area = next(m for m in outline_group.get_measurements() if m.name.value == "42798000")
    assert area.value == pytest.approx(lesion_mask(96, 128).sum() * 0.02 * 0.02)
    assert area.unit.value == "mm2"
    names = [m.name.value for m in outline_group.get_measurements()]
    assert names[:3] == ["CALL-1162635006", "MELPROB", "MELTHR-Y"]  # the viewer summary comes first
    assert set(names[3:]) == {"42798000", "81827009", "ASYM", "BORDER", "COLVAR", "COLCOUNT"}
    summary = outline_group.get_measurements()[:3]
    assert [m.name.meaning for m in summary] == [
        "Called class: Malignant melanoma",
        "Melanoma probability",
        "Melanoma call: yes, threshold",
    ]
    assert [m.value for m in summary] == pytest.approx([0.62, prediction.melanoma_probability, 0.4])
    (outline_call,) = [q for q in outline_group.get_qualitative_evaluations() if q.name.value == "MELCALL"]
    assert outline_call[0].ConceptCodeSequence[0].CodeValue == "10828004"

    # One lesion, one tracking UID (the SEG segment's): OHIF merges the three groups into one measurement
    # that has the outline, instead of failing on the two groups without coordinates.
    assert first.tracking_uid == outline_group.tracking_uid == seg_group.tracking_uid
    assert image_groups[1].tracking_uid == roi_groups[2].tracking_uid == roi_groups[3].tracking_uid
    assert image_groups[1].tracking_uid != first.tracking_uid
    containers = [i for i in _items(sr) if i.ValueType == "CONTAINER"]
    assert sr.ContinuityOfContent == "SEPARATE"
    assert containers and {i.ContinuityOfContent for i in containers} == {"SEPARATE"}


def test_dsr2html_names_every_value(written: tuple[Path, list[Dataset], list[hd.seg.Segmentation]]) -> None:
    """With SEPARATE containers dsr2html prints each item with its name, not a run-on line of numbers."""
    path, _, _ = written
    if shutil.which("dsr2html") is None:
        pytest.skip("DCMTK dsr2html is not installed")
    done = subprocess.run(["dsr2html", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("Called class", "Melanoma probability", "Probability of cancer", "Area", "Diameter"):
        assert re.search(rf"<b>{name}[^<]*</b>", done.stdout), name


def test_same_sources_give_the_same_report_and_new_content_a_new_one() -> None:
    sources = _study(3)
    report, _ = _report(sources)
    shuffled = sources[:]
    random.Random(1).shuffle(shuffled)
    again, _ = _report(shuffled)
    assert encode(again) == encode(report)
    extra, _ = _report([*sources, *_study(4)[3:]])
    assert extra.SOPInstanceUID != report.SOPInstanceUID
    assert extra.SeriesInstanceUID == report.SeriesInstanceUID
    newer, _ = _report(sources, [make_prediction(version="2.0.0") for _ in sources])
    assert newer.SOPInstanceUID != report.SOPInstanceUID
    series, instance = report_uids(sources, make_prediction().classifier, make_prediction().segmenter)
    assert (series, instance) == (report.SeriesInstanceUID, report.SOPInstanceUID)


def test_previous_versions_become_predecessor_documents() -> None:
    sources = _study(1)
    first, _ = _report(sources)
    second, _ = _report([*sources, *_study(2)[1:]], previous_versions=[first])
    (predecessor,) = second.PredecessorDocumentsSequence
    ref = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == first.SOPInstanceUID


def test_untrained_models_and_a_negative_call_are_visible(tmp_path: Path) -> None:
    sources = _study(1, pixel_spacing_mm=None)
    prediction = make_prediction(trained=False, probabilities=(0.02, 0.03, 0.05, 0.01, 0.2, 0.67, 0.02))
    report, _ = _report(sources, [prediction], rgb_images=[lesion_image(96, 128)])
    path = tmp_path / "sr.dcm"
    report.save_as(path, enforce_file_format=True)
    assert dciodvfy_problems(path) == []
    assert "UNTRAINED" in report.SeriesDescription
    texts = [str(i.TextValue) for i in _items(report) if i.ValueType == "TEXT"]
    assert any("UNTRAINED" in t for t in texts)
    calls = _named(report, "MELCALL")  # in the classification group and the outline group
    assert len(calls) == 2
    assert {c.ConceptCodeSequence[0].CodeValue for c in calls} == {"260385009"}  # Negative: 0.2 < 0.4
    (summary,) = _named(report, "CALL-400096001")
    assert summary.ConceptNameCodeSequence[0].CodeMeaning == "Called class: Melanocytic nevus"
    assert len(_named(report, "MELTHR-N")) == 1
    (finding,) = [i for i in _named(report, "121071") if i.ConceptCodeSequence[0].CodeValue != "52988006"]
    assert finding.ConceptCodeSequence[0].CodeValue == "400096001"  # nv on top
    units = {i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue for i in _named(report, "42798000")}
    assert units == {"{pixels}"}  # no Pixel Spacing: pixels, not mm


def test_inconsistent_inputs_are_refused() -> None:
    sources = _study(2)
    predictions = [make_prediction(), make_prediction()]
    segs = [build_segmentation(s, p, content_datetime=WHEN) for s, p in zip(sources, predictions, strict=True)]
    with pytest.raises(OutputError, match="aligned one to one"):
        build_report(sources, segs[:1], predictions, content_datetime=WHEN)
    with pytest.raises(OutputError, match=rf"does not segment instance {STUDY}\.2"):
        build_report(sources, [segs[0], segs[0]], predictions, content_datetime=WHEN)
    other = dermoscopy_dataset(study_uid="1.2.3.4.5")
    with pytest.raises(OutputError, match="one study"):
        build_report([sources[0], other], segs, predictions, content_datetime=WHEN)
    with pytest.raises(OutputError, match="same models"):
        build_report(sources, segs, [predictions[0], make_prediction(version="9")], content_datetime=WHEN)


def test_an_image_without_lesion_gets_area_zero_and_no_outline(tmp_path: Path) -> None:
    sources = _study(2)
    empty = dataclasses.replace(make_prediction(), mask=np.zeros((96, 128), dtype=bool))
    report, _ = _report(sources, [empty, make_prediction()])
    path = tmp_path / "sr.dcm"
    report.save_as(path, enforce_file_format=True)
    assert dciodvfy_problems(path) == []
    roi_groups = hd.sr.MeasurementReport.from_sequence([validate_readback(report)]).get_planar_roi_measurement_groups()
    assert len(roi_groups) == 3  # image 1: SEG reference only; image 2: outline and SEG reference
    (area,) = roi_groups[0].get_measurements()
    assert area.value == 0.0
    assert roi_groups[0].referenced_segmentation_frame is not None
    assert roi_groups[1].roi is not None and roi_groups[2].referenced_segmentation_frame is not None


def test_a_call_that_is_not_the_most_probable_class_says_why(tmp_path: Path) -> None:
    sources = _study(1)
    # nv most probable (0.67); weights that favour bkl (0.20 x 4 > 0.67 x 1) call bkl.
    base = make_prediction(probabilities=(0.02, 0.03, 0.20, 0.01, 0.05, 0.67, 0.02))
    weighted = dataclasses.replace(base, decision_weights=(1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0))
    assert weighted.predicted.key == "bkl" and weighted.ranked(1)[0][0].key == "nv"
    report, _ = _report(sources, [weighted])
    path = tmp_path / "sr.dcm"
    report.save_as(path, enforce_file_format=True)
    assert dciodvfy_problems(path) == []
    (note,) = [i for i in _named(report, "C0034375") if i.ValueType == "TEXT"]
    assert str(note.TextValue).startswith("Called Benign keratosis although Melanocytic nevus is more probable")
    assert "0.20 x 4 = 0.8 vs 0.67 x 1 = 0.67" in str(note.TextValue)
    # The call agrees with the top of the differential: no note.
    plain, _ = _report(sources, [base])
    assert [i for i in _named(plain, "C0034375") if i.ValueType == "TEXT"] == []
