"""The named highdicom workarounds (inference/hd_compat.py) on their own."""

from __future__ import annotations

import highdicom as hd
import pytest
from pydicom.sr.codedict import codes

from inference.outputs.hd_compat import (
    add_viewer_functional_groups,
    coded_modality,
    image_library,
    separate_containers,
)
from inference.outputs.seg import build_segmentation
from tests.factories import (
    DERMOSCOPY_SOP_CLASS,
    SECONDARY_CAPTURE_SOP_CLASS,
    VL_PHOTOGRAPHIC_SOP_CLASS,
    dermoscopy_dataset,
)
from tests.inference.predictions import WHEN, make_prediction


def test_dermoscopy_is_coded_as_dms_and_other_classes_as_highdicom_does() -> None:
    assert coded_modality(DERMOSCOPY_SOP_CLASS) == codes.cid29.Dermoscopy
    assert coded_modality(VL_PHOTOGRAPHIC_SOP_CLASS) == codes.cid29.ExternalCameraPhotography
    assert coded_modality(SECONDARY_CAPTURE_SOP_CLASS).value == "OT"
    with pytest.raises(ValueError, match=r"1\.2\.3 is not an image storage SOP class"):
        coded_modality("1.2.3")


def test_image_library_groups_images_by_modality() -> None:
    images = [
        dermoscopy_dataset(),
        dermoscopy_dataset(),
        dermoscopy_dataset(sop_class_uid=VL_PHOTOGRAPHIC_SOP_CLASS),
    ]
    library = image_library(images)
    assert library.ConceptNameCodeSequence[0].CodeValue == "111028"
    groups = library.ContentSequence
    assert [len(g.ContentSequence) for g in groups] == [2, 1]
    entry = groups[0].ContentSequence[0]
    assert entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == images[0].SOPInstanceUID
    descriptors = {d.ConceptNameCodeSequence[0].CodeValue: d for d in entry.ContentSequence}
    assert descriptors["121139"].ConceptCodeSequence[0].CodeValue == "DMS"
    assert float(descriptors["110910"].MeasuredValueSequence[0].NumericValue) == 96
    assert float(descriptors["110911"].MeasuredValueSequence[0].NumericValue) == 128


def test_empty_image_library_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        image_library([])


def test_measurement_about_names_its_subject_and_evaluations_carry_a_probability() -> None:
    from inference.outputs.hd_compat import evaluation_with_probability, measurement_about

    melanoma = hd.sr.CodedConcept("1162635006", "SCT", "Malignant melanoma")
    unit = hd.sr.CodedConcept("1", "UCUM", "no units")
    measurement = measurement_about(codes.DCM.Probability, 0.25, unit, melanoma)
    (modifier,) = measurement[0].ContentSequence
    assert modifier.RelationshipType == "HAS CONCEPT MOD"
    assert modifier.ConceptNameCodeSequence[0].CodeValue == "246090004"
    assert modifier.ConceptCodeSequence[0].CodeValue == "1162635006"
    evaluation = evaluation_with_probability(codes.DCM.DifferentialDiagnosisImpression, melanoma, 0.25, unit)
    (child,) = evaluation[0].ContentSequence
    assert child.RelationshipType == "HAS PROPERTIES"
    assert float(child.MeasuredValueSequence[0].NumericValue) == 0.25


# Canaries: each workaround in hd_compat exists because the installed highdicom has a gap. These tests
# show the gap in highdicom itself; when one fails, highdicom closed the gap: drop the workaround.


def _plain_highdicom_seg(pixel_spacing_mm: float | None = 0.02) -> hd.seg.Segmentation:
    import numpy as np
    from pydicom.uid import generate_uid

    source = dermoscopy_dataset(pixel_spacing_mm=pixel_spacing_mm)
    mask = np.zeros((int(source.Rows), int(source.Columns)), bool)
    mask[10:40, 20:60] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    return hd.seg.Segmentation(
        source_images=[source], pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=generate_uid(), series_number=1,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="canary",
        manufacturer_model_name="canary", software_versions="0", device_serial_number="0",
    )


def test_canary_gap1_highdicom_has_no_modality_for_dermoscopy() -> None:
    from highdicom.sr.templates import _get_coded_modality

    with pytest.raises(ValueError):
        _get_coded_modality(DERMOSCOPY_SOP_CLASS)


def test_canary_gap2_referenced_segmentation_frame_writes_a_frame_number() -> None:
    seg = _plain_highdicom_seg()
    reference = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=1, segment_number=1,
        source_image=hd.sr.SourceImageForSegmentation(
            referenced_sop_class_uid=DERMOSCOPY_SOP_CLASS, referenced_sop_instance_uid=seg.SOPInstanceUID,
        ),
    )
    refs = [item.ReferencedSOPSequence[0] for item in reference if item.ValueType == "IMAGE"
            and "ReferencedSegmentNumber" in item.ReferencedSOPSequence[0]]
    assert refs and "ReferencedFrameNumber" in refs[0]


def test_canary_gap3_seg_of_a_photograph_lacks_patient_orientation() -> None:
    assert "PatientOrientation" not in _plain_highdicom_seg()


def test_canary_gap4_highdicom_stamps_creation_with_the_wall_clock() -> None:
    import datetime as dt

    seg = _plain_highdicom_seg()
    assert str(seg.InstanceCreationDate) == dt.datetime.now().strftime("%Y%m%d")


def test_canary_gap5_measurements_cannot_name_their_subject_nor_evaluations_carry_numbers() -> None:
    import inspect

    measurement = set(inspect.signature(hd.sr.Measurement).parameters)
    assert not measurement & {"associated_finding", "finding", "concept_modifiers"}
    assert set(inspect.signature(hd.sr.QualitativeEvaluation).parameters) <= {"name", "value", "relationship_type"}


def test_canary_gap6_dimension_organization_uid_is_random() -> None:
    uids = {str(_plain_highdicom_seg().DimensionOrganizationSequence[0].DimensionOrganizationUID) for _ in range(2)}
    assert len(uids) == 2


def test_canary_gap7_seg_of_a_photograph_has_no_plane_orientation_nor_pixel_measures() -> None:
    calibrated = _plain_highdicom_seg().SharedFunctionalGroupsSequence[0]
    assert "PlaneOrientationSequence" not in calibrated and "PixelMeasuresSequence" in calibrated
    uncalibrated = _plain_highdicom_seg(pixel_spacing_mm=None).SharedFunctionalGroupsSequence[0]
    assert "PlaneOrientationSequence" not in uncalibrated and "PixelMeasuresSequence" not in uncalibrated


def test_canary_gap8_highdicom_writes_continuous_containers() -> None:
    # Its templates (TID 1500, 1501, 1410, 1600) build containers with this default.
    assert hd.sr.ContainerContentItem(name=codes.DCM.ImageLibrary).ContinuityOfContent == "CONTINUOUS"
    assert image_library([dermoscopy_dataset()]).ContinuityOfContent == "CONTINUOUS"


def test_separate_containers_reaches_every_container() -> None:
    library = image_library([dermoscopy_dataset(), dermoscopy_dataset(sop_class_uid=VL_PHOTOGRAPHIC_SOP_CLASS)])
    separate_containers(library)
    containers = [library, *library.ContentSequence]
    assert len(containers) == 3 and {c.ContinuityOfContent for c in containers} == {"SEPARATE"}
    image = library.ContentSequence[0].ContentSequence[0]
    assert image.ValueType == "IMAGE" and "ContinuityOfContent" not in image


def test_viewer_functional_groups_keep_calibrated_pixel_measures_and_are_idempotent() -> None:
    seg = build_segmentation(dermoscopy_dataset(pixel_spacing_mm=0.02), make_prediction(), content_datetime=WHEN)
    add_viewer_functional_groups(seg)  # already applied by build_segmentation: nothing changes
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert len(shared.PlaneOrientationSequence) == 1 and len(shared.PixelMeasuresSequence) == 1
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [0.02, 0.02]
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]


def test_a_source_without_type2_study_attributes_or_with_sex_u_is_still_built() -> None:
    import datetime as dt

    from inference.outputs.build import build_outputs
    from inference.outputs.pixels import rgb_pixels
    from tests.factories import dermoscopy_dataset
    from tests.inference.predictions import make_prediction

    source = dermoscopy_dataset()
    del source.StudyID, source.ReferringPhysicianName, source.PatientBirthDate
    source.PatientSex = "O"
    source["PatientSex"].value = "U"  # not a defined term; real senders use it
    objects = build_outputs([source], [rgb_pixels(source)], [make_prediction()],
                            uid_prefix="1.2.826.0.1.3680043.8.498.",
                            content_datetime=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert {(o.dataset.StudyID, o.dataset.PatientSex) for o in objects} == {("", "")}
