"""The one place where dermnode works around gaps of highdicom 0.28 for dermoscopy images.

Each function names the gap it closes; everything else is built by highdicom's own constructors.

1. highdicom's image library (TID 1600/1601/1602) looks the modality up from the SOP Class UID in a
   private table that lacks Dermoscopic Photography Image Storage (1.2.840.10008.5.1.4.1.1.77.1.7),
   so ``MeasurementReport(referenced_images=...)`` raises for our sources: :func:`coded_modality`
   and :func:`image_library` replace that lookup, :func:`measurement_report` puts the library where
   TID 1500 wants it (row 4, before Imaging Measurements).
2. ``ReferencedSegmentationFrame`` writes a Referenced Frame Number next to the Referenced Segment
   Number in its SEG reference; dciodvfy and dsrdump reject the combination for a single-frame SEG:
   :func:`drop_referenced_frame_numbers` removes it.
3. A Segmentation made from a single-frame photograph lacks Patient Orientation (dciodvfy reports it
   missing): :func:`copy_patient_orientation`. Laterality is not copied: dciodvfy rejects series
   Laterality on a SEG without a body part; the SR carries it as the finding site's laterality.
4. highdicom stamps Instance Creation Date/Time, and the Contribution DateTime of the equipment entry
   it adds for itself, with the wall clock; dermnode injects its clock, so that the same inputs give
   identical objects: :func:`stamp_creation`.
5. TID 300 in highdicom cannot say what a measurement is about (which class a probability is for),
   and a qualitative evaluation (CODE) cannot carry children: :func:`measurement_about` adds a
   HAS CONCEPT MOD (246090004, SCT, "Associated finding"), :func:`evaluation_with_probability` a
   HAS PROPERTIES NUM (122157, DCM, "Probability"); both relationships are allowed from NUM / CODE
   sources in Comprehensive (3D) SR (PS3.3 A.35.13.3).
6. highdicom gives every SEG a random Dimension Organization UID; :func:`derive_dimension_organization`
   derives it from the SEG's own SOP Instance UID instead.
7. Viewer compatibility, not a highdicom defect: the SEG loader of OHIF 3.x (cornerstone's adapter)
   reads ``SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient`` and
   ``...PixelMeasuresSequence[0]`` unconditionally; for a photograph (no Frame of Reference) highdicom
   writes no Plane Orientation, and Pixel Measures only when the source has Pixel Spacing, so the SEG
   never loads. :func:`add_viewer_functional_groups` adds a shared
   Plane Orientation (Patient) of ``1\\0\\0\\0\\1\\0`` (row direction +x, column direction +y, the
   orientation viewers assume for an image without one) and, for a source without Pixel Spacing, a
   nominal Pixel Measures of 1 x 1 (the unit spacing viewers assume for an uncalibrated image) with
   Slice Thickness 1 (highdicom's reader requires both). PS3.3 Table A.51-2 (2024c) foresees these
   groups only with a patient-relative Frame of Reference, which a photograph's SEG lacks, so this is
   a documented compatibility measure (conformance statement 8.1.2); dciodvfy accepts it.
8. highdicom writes every CONTAINER with Continuity Of Content CONTINUOUS, which tells a renderer to
   run the children together as one text: DCMTK's ``dsr2html`` then prints a measurement group as one
   line of numbers without their names. :func:`separate_containers` sets SEPARATE on every CONTAINER
   (PS3.3 C.17.3.2.2: the items are separate statements, as they are in TID 1500).
9. ``MeasurementReport`` cannot add the study-level "Qualitative Evaluations" container of TID 1500
    (UMLS C0034375, after Imaging Measurements), where dermnode says which image was not analysed
    and why: :func:`measurement_report` appends it with one TEXT (DCM 121106 "Comment") per note.
10. The SEG and SR constructors read the source's type 2 Patient and General Study attributes directly
    and accept only M, F or O as Patient's Sex: a source that leaves one out, or says "U", fails.
    :func:`complete_patient_and_study` adds the missing ones empty (as type 2 allows) and empties a
    Patient's Sex outside the enumerated values (PS3.3 C.7.1.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import highdicom as hd
from highdicom.sr.templates import _get_coded_modality
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.valuerep import DA, DT, TM

from inference.outputs.identity import DEFAULT_UID_PREFIX, derive_uid

DERMOSCOPY_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.7"
VIEWER_IMAGE_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
PIXELS_UNIT = hd.sr.CodedConcept("{pixels}", "UCUM", "Pixels")
# DCM 260753009 "Source" is the concept name highdicom itself gives image library entries.
_SOURCE = hd.sr.CodedConcept("260753009", "SCT", "Source")
# In pydicom's SNOMED CT dictionary as "Associated finding (attribute)".
ASSOCIATED_FINDING = hd.sr.CodedConcept("246090004", "SCT", "Associated finding")
# TID 1500 row 12 (not in pydicom's dictionaries).
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")


def coded_modality(sop_class_uid: str) -> Code:
    """The CID 29 modality of an image SOP class; DCM DMS "Dermoscopy" for Dermoscopic Photography."""
    if sop_class_uid == DERMOSCOPY_SOP_CLASS_UID:
        return codes.cid29.Dermoscopy  # DCM DMS, present in pydicom's CID 29
    try:
        return _get_coded_modality(sop_class_uid)
    except ValueError as e:
        raise ValueError(f"SOP Class UID {sop_class_uid} is not an image storage SOP class.") from e


def image_library(images: Sequence[Dataset]) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library: one group per modality, one TID 1601 entry per image.

    Each entry carries the TID 1602 descriptors highdicom would write for a photograph: Modality,
    Pixel Data Rows and Pixel Data Columns, as acquisition context of the image item.
    """
    if not images:
        raise ValueError("Argument 'images' must contain at least one image for the image library.")
    groups: dict[str, list[hd.sr.ImageContentItem]] = {}
    for ds in images:
        modality = coded_modality(str(ds.SOPClassUID))
        item = hd.sr.ImageContentItem(
            name=_SOURCE,
            referenced_sop_class_uid=ds.SOPClassUID,
            referenced_sop_instance_uid=ds.SOPInstanceUID,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        item.ContentSequence = hd.sr.ContentSequence(
            [
                hd.sr.CodeContentItem(
                    name=codes.DCM.Modality,
                    value=modality,
                    relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT,
                ),
                hd.sr.NumContentItem(
                    name=codes.DCM.PixelDataRows,
                    value=int(ds.Rows),
                    unit=PIXELS_UNIT,
                    relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT,
                ),
                hd.sr.NumContentItem(
                    name=codes.DCM.PixelDataColumns,
                    value=int(ds.Columns),
                    unit=PIXELS_UNIT,
                    relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT,
                ),
            ]
        )
        groups.setdefault(modality.value, []).append(item)
    library = hd.sr.ContainerContentItem(
        name=codes.DCM.ImageLibrary, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    library.ContentSequence = hd.sr.ContentSequence()
    for items in groups.values():
        group = hd.sr.ContainerContentItem(
            name=codes.DCM.ImageLibraryGroup, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        group.ContentSequence = hd.sr.ContentSequence(items)
        library.ContentSequence.append(group)
    return library


def measurement_report(
    *,
    observation_context: hd.sr.ObservationContext,
    procedure_reported: hd.sr.CodedConcept | Code,
    imaging_measurements: Sequence[
        hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    ],
    referenced_images: Sequence[Dataset],
    notes: Sequence[str] = (),
) -> hd.sr.MeasurementReport:
    """``hd.sr.MeasurementReport`` with an image library that also accepts dermoscopy images, and
    ``notes`` as TEXT items of a Qualitative Evaluations container (gap 9)."""
    report = hd.sr.MeasurementReport(
        observation_context=observation_context,
        procedure_reported=procedure_reported,
        imaging_measurements=imaging_measurements,
    )
    root = report[0].ContentSequence
    position = next(
        i for i, item in enumerate(root) if item.ConceptNameCodeSequence[0].CodeValue == "126010"
    )  # DCM 126010 Imaging Measurements, which highdicom always appends last
    root.insert(position, image_library(referenced_images))
    if notes:
        evaluations = hd.sr.ContainerContentItem(
            name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        evaluations.ContentSequence = DicomSequence([
            hd.sr.TextContentItem(
                name=codes.DCM.Comment, value=note, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
            for note in notes
        ])
        root.append(evaluations)
    return report


#: Type 2 attributes of the Patient and General Study modules that highdicom copies from a source.
_PATIENT_AND_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                            "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def complete_patient_and_study(source: Dataset) -> Dataset:
    """Add missing type 2 Patient / General Study attributes empty, empty an invalid sex (gap 10); in place."""
    for keyword in _PATIENT_AND_STUDY_TYPE2:
        if keyword not in source:
            setattr(source, keyword, "")
    if str(source.PatientSex or "") not in ("M", "F", "O", ""):
        source.PatientSex = ""
    return source


def drop_referenced_frame_numbers(group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations) -> None:
    """Remove Referenced Frame Number from the SEG reference of a TID 1410 group (see gap 2)."""
    for item in group[0].ContentSequence:
        if item.ValueType != "IMAGE" or item.ReferencedSOPSequence[0].ReferencedSOPClassUID != (
            "1.2.840.10008.5.1.4.1.1.66.4"
        ):
            continue
        ref = item.ReferencedSOPSequence[0]
        if "ReferencedSegmentNumber" in ref and "ReferencedFrameNumber" in ref:
            del ref.ReferencedFrameNumber


def copy_patient_orientation(seg: hd.seg.Segmentation, source: Dataset) -> None:
    """Copy Patient Orientation (type 2: empty when the source has none) onto ``seg`` (see gap 3)."""
    seg.PatientOrientation = source.get("PatientOrientation", "")


def stamp_creation(ds: Dataset, when: datetime) -> None:
    """Set Instance Creation Date and Time from the injected clock instead of the wall clock (gap 4)."""
    ds.InstanceCreationDate = DA(when.date())
    ds.InstanceCreationTime = TM(when.time())
    for item in ds.get("ContributingEquipmentSequence", []):
        if item.get("ManufacturerModelName") == "highdicom" and "ContributionDateTime" in item:
            item.ContributionDateTime = DT(when)


def derive_dimension_organization(seg: hd.seg.Segmentation, prefix: str = DEFAULT_UID_PREFIX) -> None:
    """Replace highdicom's random Dimension Organization UID by one derived from the SEG (gap 6)."""
    uid = derive_uid("dimension-organization", [str(seg.SOPInstanceUID)], prefix)
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = uid
    for item in seg.get("DimensionIndexSequence", []):
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = uid


def add_viewer_functional_groups(seg: hd.seg.Segmentation) -> None:
    """Add shared Plane Orientation and (if missing) nominal Pixel Measures groups for OHIF (gap 7).

    Groups highdicom already wrote (Pixel Measures from a calibrated source) are kept unchanged.
    """
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PlaneOrientationSequence" not in shared:
        shared.PlaneOrientationSequence = hd.PlaneOrientationSequence(
            coordinate_system="PATIENT", image_orientation=VIEWER_IMAGE_ORIENTATION
        )
    if "PixelMeasuresSequence" not in shared:
        measures: DicomSequence = hd.PixelMeasuresSequence(pixel_spacing=(1.0, 1.0), slice_thickness=1.0)
        shared.PixelMeasuresSequence = measures


def separate_containers(ds: Dataset) -> None:
    """Set Continuity Of Content to SEPARATE on ``ds`` (if a CONTAINER) and every CONTAINER below it (gap 8)."""
    if ds.get("ValueType") == "CONTAINER":
        ds.ContinuityOfContent = "SEPARATE"
    for item in ds.get("ContentSequence", []):
        separate_containers(item)


def measurement_about(
    name: hd.sr.CodedConcept | Code,
    value: float,
    unit: hd.sr.CodedConcept | Code,
    finding: hd.sr.CodedConcept | Code,
) -> hd.sr.Measurement:
    """A TID 300 measurement whose subject is ``finding`` (HAS CONCEPT MOD "Associated finding", gap 5)."""
    measurement = hd.sr.Measurement(name=name, value=value, unit=unit)
    modifier = hd.sr.CodeContentItem(
        name=ASSOCIATED_FINDING,
        value=finding,
        relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
    )
    num = measurement[0]
    if "ContentSequence" not in num:
        num.ContentSequence = hd.sr.ContentSequence()
    num.ContentSequence.insert(0, modifier)
    return measurement


def evaluation_with_probability(
    name: hd.sr.CodedConcept | Code,
    value: hd.sr.CodedConcept | Code,
    probability: float,
    unit: hd.sr.CodedConcept | Code,
) -> hd.sr.QualitativeEvaluation:
    """A qualitative evaluation with its probability as a HAS PROPERTIES NUM child (gap 5)."""
    evaluation = hd.sr.QualitativeEvaluation(name=name, value=value)
    evaluation[0].ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.NumContentItem(
                name=codes.DCM.Probability,
                value=probability,
                unit=unit,
                relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES,
            )
        ]
    )
    return evaluation
