"""Lesion (BINARY) and attention (FRACTIONAL) SEG objects (inference/seg.py), round-tripped."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread

from dermnode.kernel.errors import OutputError
from inference.outputs.conventions import (
    ATTENTION_LEVELS_SEG_SERIES_NUMBER,
    ATTENTION_SEG_SERIES_NUMBER,
    LESION_SEG_SERIES_NUMBER,
)
from inference.outputs.readback import encode, validate_readback
from inference.outputs.seg import (
    attention_levels,
    build_attention_levels_segmentation,
    build_attention_segmentation,
    build_segmentation,
)
from tests.dciodvfy import dciodvfy_problems
from tests.factories import (
    DERMOSCOPY_SOP_CLASS,
    VL_PHOTOGRAPHIC_SOP_CLASS,
    dermoscopy_dataset,
    encoded_dermoscopy_file,
    lesion_mask,
)
from tests.inference.predictions import WHEN, make_prediction


def _write(ds: hd.seg.Segmentation, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("spacing", [0.02, None])
def test_lesion_seg_round_trips_pixel_exact_and_validates(tmp_path: Path, spacing: float | None) -> None:
    prediction = make_prediction()
    source = dermoscopy_dataset(pixel_spacing_mm=spacing)
    seg = build_segmentation(source, prediction, content_datetime=WHEN)
    path = _write(seg, tmp_path / "seg.dcm")
    assert dciodvfy_problems(path) == []

    back = hd.seg.segread(path)
    frame = back.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    assert frame.shape == (1, 96, 128, 1)
    assert np.array_equal(frame[0, :, :, 0].astype(bool), lesion_mask(96, 128))  # no flip, no shift
    assert back.SegmentationType == "BINARY"
    segment = back.get_segment_description(1)
    assert segment.segment_label == "Lesion"
    assert segment.segmented_property_type.value == "52988006"
    assert segment.segmented_property_category.value == "49755003"
    assert segment.algorithm_type.value == "AUTOMATIC"
    assert segment.algorithm_identification is not None
    algorithm = segment.algorithm_identification[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("lesion-segmenter", "1.0.0")
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"
    # Patient and study identity come from the source.
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber", "SpecificCharacterSet"):
        assert back.get(keyword) == source.get(keyword), keyword
    assert back.PatientOrientation == source.PatientOrientation
    assert back.SeriesNumber == LESION_SEG_SERIES_NUMBER
    assert "AI-generated, not for diagnostic use" in back.SeriesDescription
    assert back.SeriesDescription.startswith("Lesion SEG 1.0.0")  # the name does not fit: it is in the equipment
    assert back.ManufacturerModelName == "lesion-segmenter" and back.SoftwareVersions == "1.0.0"
    assert any(item.Manufacturer == "dermnode" for item in back.ContributingEquipmentSequence)
    shared = back.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    # The source's spacing when it has one; otherwise the nominal 1 x 1 OHIF needs (hd_compat gap 7).
    expected = spacing if spacing is not None else 1.0
    assert [float(v) for v in measures.PixelSpacing] == [expected, expected]
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert "PlanePositionSequence" not in shared and "FrameOfReferenceUID" not in back
    validate_readback(seg)


def test_lesion_seg_is_deterministic_and_versioned() -> None:
    source = dermoscopy_dataset()
    first = build_segmentation(source, make_prediction(), content_datetime=WHEN)
    again = build_segmentation(source, make_prediction(), content_datetime=WHEN)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    assert str(first.InstanceCreationTime) == "120000"
    assert encode(first) == encode(again)  # the injected clock makes the object byte-identical
    newer = build_segmentation(source, make_prediction(version="1.1.0"), content_datetime=WHEN)
    assert newer.SOPInstanceUID != first.SOPInstanceUID
    assert newer.SeriesInstanceUID == first.SeriesInstanceUID  # same study, same model name
    other = build_segmentation(
        dermoscopy_dataset(study_uid=source.StudyInstanceUID), make_prediction(), content_datetime=WHEN
    )
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert other.SeriesInstanceUID == first.SeriesInstanceUID


def test_untrained_model_is_marked() -> None:
    seg = build_segmentation(dermoscopy_dataset(), make_prediction(trained=False), content_datetime=WHEN)
    assert "UNTRAINED" in seg.SeriesDescription
    assert "UNTRAINED" in seg.ContentDescription


def test_vl_photographic_source_works(tmp_path: Path) -> None:
    prediction = make_prediction()
    source = dermoscopy_dataset(sop_class_uid=VL_PHOTOGRAPHIC_SOP_CLASS)
    path = _write(build_segmentation(source, prediction, content_datetime=WHEN), tmp_path / "seg.dcm")
    assert dciodvfy_problems(path) == []


def test_attention_seg_is_fractional_in_its_own_series(tmp_path: Path) -> None:
    prediction = make_prediction()
    source = dermoscopy_dataset()
    seg = build_attention_segmentation(source, prediction, content_datetime=WHEN)
    path = _write(seg, tmp_path / "attention.dcm")
    assert dciodvfy_problems(path) == []
    back = hd.seg.segread(path)
    assert "PlaneOrientationSequence" in back.SharedFunctionalGroupsSequence[0]  # OHIF's loader needs it
    assert back.SegmentationType == "FRACTIONAL"
    assert back.SegmentationFractionalType == "PROBABILITY"
    assert back.SeriesNumber == ATTENTION_SEG_SERIES_NUMBER
    lesion = build_segmentation(source, prediction, content_datetime=WHEN)
    assert back.SeriesInstanceUID != lesion.SeriesInstanceUID
    assert back.SOPInstanceUID != lesion.SOPInstanceUID
    assert back.get_segment_description(1).segmented_property_type.value == "130403"
    stored = dcmread(path).pixel_array.astype(np.float32) / 255.0
    assert prediction.attention is not None
    assert np.abs(stored - prediction.attention).max() <= 0.5 / 255 + 1e-6
    validate_readback(seg)


def test_attention_seg_needs_an_attention_map() -> None:
    source = dermoscopy_dataset(sop_instance_uid="1.2.3.99")
    with pytest.raises(OutputError, match=r"1\.2\.3\.99.*no attention map"):
        build_attention_segmentation(source, make_prediction(attention=False), content_datetime=WHEN)
    with pytest.raises(OutputError, match=r"attention-levels SEG for instance 1\.2\.3\.99.*no attention map"):
        build_attention_levels_segmentation(source, make_prediction(attention=False), content_datetime=WHEN)


def test_attention_levels_are_disjoint_bands_of_the_top_10_25_50_percent() -> None:
    rng = np.random.default_rng(7)
    attention = rng.random((40, 50)).astype(np.float32)
    attention[:5] = 0.0  # no attention: in no band
    bands = attention_levels(attention)
    assert len(bands) == 3
    assert not (bands[0] & bands[1]).any() and not (bands[1] & bands[2]).any() and not (bands[0] & bands[2]).any()
    total = attention.size
    for k, percent in enumerate((10, 25, 50)):
        union = np.logical_or.reduce(bands[: k + 1])
        assert abs(union.sum() - total * percent / 100) <= 1  # cumulative: the top p % of the pixels
        assert attention[union].min() >= attention[~union].max()  # and exactly the hottest ones
    assert not np.logical_or.reduce(bands)[:5].any()
    assert [b.sum() for b in attention_levels(np.zeros((8, 8), dtype=np.float32))] == [0, 0, 0]


def test_attention_levels_seg_is_binary_with_three_segments_in_its_own_series(tmp_path: Path) -> None:
    prediction = make_prediction()
    source = dermoscopy_dataset()
    seg = build_attention_levels_segmentation(source, prediction, content_datetime=WHEN)
    path = _write(seg, tmp_path / "levels.dcm")
    assert dciodvfy_problems(path) == []
    back = hd.seg.segread(path)
    assert back.SegmentationType == "BINARY" and back.ContentLabel == "ATTENTION_LEVELS"
    assert back.SeriesNumber == ATTENTION_LEVELS_SEG_SERIES_NUMBER
    assert back.SeriesDescription.startswith("Attention levels SEG")
    assert "PlaneOrientationSequence" in back.SharedFunctionalGroupsSequence[0]
    others = {
        build_segmentation(source, prediction, content_datetime=WHEN).SeriesInstanceUID,
        build_attention_segmentation(source, prediction, content_datetime=WHEN).SeriesInstanceUID,
    }
    assert back.SeriesInstanceUID not in others
    labels = [back.get_segment_description(n).segment_label for n in (1, 2, 3)]
    assert labels == ["Attention top 10 %", "Attention top 10-25 %", "Attention top 25-50 %"]
    assert all(back.get_segment_description(n).segmented_property_type.value == "130403" for n in (1, 2, 3))
    assert prediction.attention is not None
    expected = attention_levels(prediction.attention)
    pixels = back.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1, 2, 3])
    for n in range(3):
        assert np.array_equal(pixels[0, :, :, n].astype(bool), expected[n])
    assert "RecommendedDisplayCIELabValue" in back.SegmentSequence[0]
    validate_readback(seg)


def test_mask_of_the_wrong_size_is_refused() -> None:
    source = dermoscopy_dataset(sop_instance_uid="1.2.3.98", sop_class_uid=DERMOSCOPY_SOP_CLASS)
    with pytest.raises(OutputError, match=r"1\.2\.3\.98.*96 rows and 128 columns"):
        build_segmentation(source, make_prediction(rows=50, columns=60), content_datetime=WHEN)


def test_seg_of_a_jpeg_source_validates(tmp_path: Path) -> None:
    if shutil.which("dcmcjpeg") is None:
        pytest.skip("DCMTK is not installed")
    source = dcmread(encoded_dermoscopy_file(tmp_path, "jpeg-baseline"))
    path = _write(build_segmentation(source, make_prediction(), content_datetime=WHEN), tmp_path / "seg.dcm")
    assert dciodvfy_problems(path) == []
    assert np.array_equal(hd.seg.segread(path).pixel_array.astype(bool), lesion_mask(96, 128))


@pytest.mark.parametrize(("rows", "columns"), [(97, 131), (1, 9), (64, 3)])
def test_bit_packing_of_odd_sizes_keeps_the_mask_exact(rows: int, columns: int) -> None:
    source = dermoscopy_dataset(rows=rows, columns=columns)
    rng = np.random.default_rng(rows * columns)
    mask = rng.random((rows, columns)) > 0.5
    prediction = make_prediction(rows=rows, columns=columns)
    prediction = dataclasses.replace(prediction, mask=mask)
    back = validate_readback(build_segmentation(source, prediction, content_datetime=WHEN))
    assert isinstance(back, hd.seg.Segmentation)
    frame = back.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    assert np.array_equal(frame[0, :, :, 0].astype(bool), mask)
