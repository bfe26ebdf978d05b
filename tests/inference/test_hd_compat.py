"""The named highdicom workarounds (inference/hd_compat.py) on their own."""

from __future__ import annotations

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
