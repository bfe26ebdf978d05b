"""The named highdicom workarounds (inference/hd_compat.py) on their own."""

from __future__ import annotations

import highdicom as hd
import pytest
from pydicom.sr.codedict import codes

from inference.hd_compat import coded_modality, image_library
from tests.factories import (
    DERMOSCOPY_SOP_CLASS,
    SECONDARY_CAPTURE_SOP_CLASS,
    VL_PHOTOGRAPHIC_SOP_CLASS,
    dermoscopy_dataset,
)


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
    from inference.hd_compat import evaluation_with_probability, measurement_about

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
