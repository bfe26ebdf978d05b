"""One TID 1500 Measurement Report (Comprehensive 3D SR) per study: what the models said about each image.

Content tree (PS3.16 TID 1500), built by highdicom's templates:

* observer context: a device observer (the dermnode algorithms), procedure reported SCT 446078004
  "Dermoscopic photography", an image library listing every source image (via
  :func:`inference.outputs.hd_compat.measurement_report`, because highdicom cannot code the dermoscopy modality);
* per image, three measurement groups about the one lesion, all with the lesion's tracking UID (the
  SEG segment's), so a viewer that merges groups by tracking UID (OHIF does) sees one finding:

  1. TID 1410 with the lesion outline as a SCOORD POLYLINE and the ABCD features, led by a viewer
     summary (see :func:`_viewer_summary`): the called class, the melanoma probability and the call as
     named NUM items, the only kind of item OHIF labels on the outline; first because OHIF shows the
     first five labels of the merged groups;
  2. TID 1501 classification: finding = the called class (the bundle's decision rule, see
     :func:`inference.models.prediction.decide`); the top-3 differential by probability (DCM 111023, each with
     its probability); the probability of every class (DCM 122157, with an "Associated finding" modifier
     naming the class); DCM 111047 "Probability of cancer" for any malignancy and for melanoma; the
     operating threshold (DCM 122411) and the resulting call, Positive/Negative;
  3. TID 1410 referencing segment 1 of the image's lesion SEG.

  An image with nothing segmented has no outline: groups 2 and 3 only (OHIF cannot draw those).
* every CONTAINER has Continuity Of Content SEPARATE (:func:`inference.outputs.hd_compat.separate_containers`).
* when an image of the study could not be analysed: a Qualitative Evaluations container (UMLS C0034375)
  with one TEXT "Comment" per such image, naming its SOP Instance UID and the reason.

Codes are from pydicom's dictionaries (DICOM PS3.16) except the ``99DERMN`` concepts below, a private
coding scheme declared in the Coding Scheme Identification Sequence, for which DICOM has no code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.sr.codedict import codes

from dermnode.kernel.errors import OutputError
from inference.models.prediction import ClassLabel, CodedConcept, LesionPrediction, ModelIdentity
from inference.outputs.contour import lesion_outline
from inference.outputs.conventions import (
    MANUFACTURER,
    OUTPUT_CHARACTER_SET,
    REPORT_SERIES_NUMBER,
    lesion_tracking_id,
    lesion_tracking_uid,
    series_description,
)
from inference.outputs.hd_compat import (
    drop_referenced_frame_numbers,
    evaluation_with_probability,
    measurement_about,
    measurement_report,
    separate_containers,
    stamp_creation,
)
from inference.outputs.identity import DEFAULT_UID_PREFIX, derive_uid
from inference.outputs.measurements import LesionMeasurements, measure_lesion
from inference.outputs.pixels import rgb_pixels
from inference.outputs.seg import LESION_SEGMENT_NUMBER, LESION_TYPE

DIFFERENTIAL_SIZE = 3

DERMOSCOPIC_PHOTOGRAPHY = hd.sr.CodedConcept("446078004", "SCT", "Dermoscopic photography")
MALIGNANT = hd.sr.CodedConcept("21594007", "SCT", "Malignant")
MALIGNANT_MELANOMA = CodedConcept("1162635006", "SCT", "Malignant melanoma")
POSITIVE = hd.sr.CodedConcept("10828004", "SCT", "Positive")
#: TID 1501's concept name for qualitative evaluations, CODE or TEXT.
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
NEGATIVE = hd.sr.CodedConcept("260385009", "SCT", "Negative")

# Private concepts: DICOM PS3.16 has no codes for these dermoscopy features and for the call.
LOCAL_SCHEME = "99DERMN"
SUSPICIOUS_FOR_MELANOMA = hd.sr.CodedConcept("MELCALL", LOCAL_SCHEME, "Suspicious for melanoma")
ASYMMETRY = hd.sr.CodedConcept("ASYM", LOCAL_SCHEME, "Asymmetry index")
BORDER_IRREGULARITY = hd.sr.CodedConcept("BORDER", LOCAL_SCHEME, "Border irregularity index")
COLOUR_VARIEGATION = hd.sr.CodedConcept("COLVAR", LOCAL_SCHEME, "Colour variegation index")
COLOUR_COUNT = hd.sr.CodedConcept("COLCOUNT", LOCAL_SCHEME, "Number of dermoscopic colours")
# The viewer summary (first items of the outline group): pre-coordinated names, because OHIF labels a
# measurement with the Code Meaning of each NUM and shows no CODE value.
MELANOMA_PROBABILITY = hd.sr.CodedConcept("MELPROB", LOCAL_SCHEME, "Melanoma probability")
MELANOMA_CALL_THRESHOLD = {
    True: hd.sr.CodedConcept("MELTHR-Y", LOCAL_SCHEME, "Melanoma call: yes, threshold"),
    False: hd.sr.CodedConcept("MELTHR-N", LOCAL_SCHEME, "Melanoma call: no, threshold"),
}

NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
MILLIMETRE = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
SQUARE_MILLIMETRE = hd.sr.CodedConcept("mm2", "UCUM", "square millimeter")
PIXELS = hd.sr.CodedConcept("{pixels}", "UCUM", "pixels")


@dataclass(frozen=True)
class NotAnalysed:
    """An image of the study that was received but could not be analysed, and why."""

    sop_instance_uid: str
    reason: str

    def note(self) -> str:
        return f"Image {self.sop_instance_uid} was not analysed: {self.reason}"


def report_uids(
    sources: Sequence[Dataset],
    classifier: ModelIdentity,
    segmenter: ModelIdentity,
    prefix: str = DEFAULT_UID_PREFIX,
) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the report on ``sources``.

    The instance UID depends on the sorted source SOP Instance UIDs and both model versions, so a
    resent study gives the same report and an extra image (or a new model) a new one; the series
    depends only on the study and the model names, so successive versions share a series.
    """
    study_uid = str(sources[0].StudyInstanceUID)
    names = [classifier.name, segmenter.name]
    series = derive_uid("sr-series", [study_uid, *names], prefix)
    parts = sorted(str(ds.SOPInstanceUID) for ds in sources)
    instance = derive_uid("sr", [*parts, *names, classifier.version, segmenter.version], prefix)
    return str(series), str(instance)


def build_report(
    sources: Sequence[Dataset],
    segmentations: Sequence[hd.seg.Segmentation],
    predictions: Sequence[LesionPrediction],
    *,
    content_datetime: datetime,
    uid_prefix: str = DEFAULT_UID_PREFIX,
    series_number: int = REPORT_SERIES_NUMBER,
    rgb_images: Sequence[npt.NDArray[np.uint8] | None] | None = None,
    previous_versions: Sequence[Dataset] | None = None,
    not_analysed: Sequence[NotAnalysed] = (),
) -> hd.sr.Comprehensive3DSR:
    """The study's TID 1500 report; ``sources``, ``segmentations`` and ``predictions`` are aligned.

    ``segmentations[i]`` is the lesion SEG of ``sources[i]`` (from :func:`inference.outputs.seg.build_segmentation`).
    ``rgb_images[i]``, when given, is the decoded image for the colour features; otherwise the source
    pixels are decoded, and colour features are left out for a source without Pixel Data.
    ``previous_versions`` are earlier reports on the same study, listed as Predecessor Documents.
    ``not_analysed`` are images of the study left out, each named with its reason in a TEXT item.
    Raises :class:`OutputError` when the inputs do not fit together.
    """
    _check_inputs(sources, segmentations, predictions, rgb_images)
    images = list(rgb_images) if rgb_images is not None else [None] * len(sources)
    order = sorted(range(len(sources)), key=lambda i: (_instance_number(sources[i]), sources[i].SOPInstanceUID))
    classifier, segmenter = predictions[0].classifier, predictions[0].segmenter
    series_uid, sop_uid = report_uids(sources, classifier, segmenter, uid_prefix)

    groups: list[
        hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    ] = []
    for i in order:
        source, seg, prediction = sources[i], segmentations[i], predictions[i]
        try:
            if not prediction.mask.any():  # nothing segmented: an empty SEG, area 0, no outline
                groups.append(_classification_group(source, prediction, uid_prefix))
                groups.append(_segmentation_group(source, seg, prediction, _area(0.0, _calibrated(source)), uid_prefix))
                continue
            features = _features(source, prediction, images[i])
            groups.append(_outline_group(source, prediction, features, uid_prefix))
            groups.append(_classification_group(source, prediction, uid_prefix))
            groups.append(
                _segmentation_group(source, seg, prediction, _area(features.area, features.calibrated), uid_prefix)
            )
        except (ValueError, TypeError) as e:
            raise OutputError(f"Could not build the report content for instance {source.SOPInstanceUID}: {e}") from e

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derive_uid(
                "device-observer",
                [classifier.name, classifier.version, segmenter.name, segmenter.version],
                uid_prefix,
            ),
            name=f"dermnode: {classifier.label}; {segmenter.label}",  # TEXT: no length limit
            manufacturer_name=MANUFACTURER,
            model_name=_ascii_limited(f"{classifier.name} + {segmenter.name}", 64),
        ),
    )
    ordered_sources = [sources[i] for i in order]
    try:
        content = measurement_report(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=DERMOSCOPIC_PHOTOGRAPHY,
            imaging_measurements=groups,
            referenced_images=ordered_sources,
            notes=[item.note() for item in not_analysed],
        )
        report = hd.sr.Comprehensive3DSR(
            evidence=[*ordered_sources, *(segmentations[i] for i in order)],
            content=content[0],
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,  # AI output nobody has verified: PRELIMINARY, UNVERIFIED
            is_verified=False,
            previous_versions=previous_versions,
            series_description=series_description(
                classifier, kind="AI report", untrained=not (classifier.trained and segmenter.trained)
            ),
            content_date=content_datetime.date(),
            content_time=content_datetime.time(),
            series_date=content_datetime.date(),
            series_time=content_datetime.time(),
            coding_schemes=_coding_schemes(predictions),
            manufacturer_model_name=_ascii_limited(f"{classifier.name} + {segmenter.name}", 64),
            software_versions=_ascii_limited(f"{classifier.version} + {segmenter.version}", 64),
            specific_character_set=OUTPUT_CHARACTER_SET,
        )
    except (ValueError, TypeError, AttributeError) as e:
        uids = ", ".join(str(ds.SOPInstanceUID) for ds in ordered_sources)
        raise OutputError(f"Could not build the report {sop_uid} on instances {uids}: {e}") from e
    separate_containers(report)
    stamp_creation(report, content_datetime)
    return report


def _classification_group(
    source: Dataset, prediction: LesionPrediction, prefix: str
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    melanoma = _melanoma_concept(prediction.labels)
    measurements = [
        measurement_about(
            codes.DCM.ProbabilityOfCancer, _rounded(prediction.malignant_probability), NO_UNITS, MALIGNANT
        ),
        measurement_about(codes.DCM.ProbabilityOfCancer, _rounded(prediction.melanoma_probability), NO_UNITS, melanoma),
        measurement_about(codes.DCM.ThresholdValue, _rounded(prediction.operating_threshold), NO_UNITS, melanoma),
    ]
    measurements += [
        measurement_about(codes.DCM.Probability, _rounded(p), NO_UNITS, _coded(label.code))
        for label, p in zip(prediction.labels, prediction.probabilities, strict=True)
    ]
    evaluations = [
        evaluation_with_probability(
            codes.DCM.DifferentialDiagnosisImpression, _coded(label.code), _rounded(p), NO_UNITS
        )
        for label, p in prediction.ranked(DIFFERENTIAL_SIZE)
    ]
    evaluations.append(_melanoma_call(prediction))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=lesion_tracking_uid(source, prefix),
            identifier=f"Classification of image {_instance_number(source)}",
        ),
        finding_type=_coded(prediction.predicted.code),
        algorithm_id=_algorithm_id(prediction.classifier),
        finding_sites=_finding_sites(source),
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(
                referenced_sop_class_uid=source.SOPClassUID,
                referenced_sop_instance_uid=source.SOPInstanceUID,
            )
        ],
    )
    note = prediction.decision_note()
    if note is not None:
        # TID 1501 row 13: a TEXT qualitative evaluation (highdicom builds only the CODE form).
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=QUALITATIVE_EVALUATIONS, value=note, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
        )
    return group


def _segmentation_group(
    source: Dataset,
    seg: hd.seg.Segmentation,
    prediction: LesionPrediction,
    area: hd.sr.Measurement,
    prefix: str,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    reference = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        frame_number=1,
        segment_number=LESION_SEGMENT_NUMBER,
        source_image=hd.sr.SourceImageForSegmentation(
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
        ),
    )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=lesion_tracking_uid(source, prefix), identifier=lesion_tracking_id(source)
        ),
        referenced_segment=reference,
        finding_type=LESION_TYPE,
        algorithm_id=_algorithm_id(prediction.segmenter),
        finding_sites=_finding_sites(source),
        measurements=[area],
    )
    drop_referenced_frame_numbers(group)
    return group


def _outline_group(
    source: Dataset, prediction: LesionPrediction, features: LesionMeasurements, prefix: str
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=lesion_outline(prediction.mask),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
        ),
    )
    length_unit = MILLIMETRE if features.calibrated else PIXELS
    measurements = [
        *_viewer_summary(prediction),
        _area(features.area, features.calibrated),
        hd.sr.Measurement(
            name=codes.SCT.Diameter,
            value=features.max_diameter,
            unit=length_unit,
            derivation=codes.SCT.Maximum,
        ),
        hd.sr.Measurement(name=ASYMMETRY, value=features.asymmetry, unit=NO_UNITS),
        hd.sr.Measurement(name=BORDER_IRREGULARITY, value=features.border_irregularity, unit=NO_UNITS),
    ]
    if features.colour_count > 0:
        measurements += [
            hd.sr.Measurement(name=COLOUR_VARIEGATION, value=features.colour_variegation, unit=NO_UNITS),
            hd.sr.Measurement(name=COLOUR_COUNT, value=features.colour_count, unit=NO_UNITS),
        ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=lesion_tracking_uid(source, prefix),
            identifier=f"{lesion_tracking_id(source)} (outline)",
        ),
        referenced_region=region,
        finding_type=LESION_TYPE,
        algorithm_id=_algorithm_id(prediction.segmenter),
        finding_sites=_finding_sites(source),
        measurements=measurements,
        qualitative_evaluations=[_melanoma_call(prediction)],
    )


def _viewer_summary(prediction: LesionPrediction) -> list[hd.sr.Measurement]:
    """The classification as three named NUMs that a viewer labelling NUMs by name can show.

    "Called class: <class>" = its probability, "Melanoma probability" and "Melanoma call: yes|no,
    threshold" = the operating threshold. The same facts are coded in the classification group;
    these private, pre-coordinated concepts exist because OHIF shows the Code Meaning of NUM items only.
    """
    called = prediction.predicted
    index = prediction.labels.index(called)
    return [
        hd.sr.Measurement(
            name=_called_class_concept(called),
            value=_rounded(prediction.probabilities[index]),
            unit=NO_UNITS,
        ),
        hd.sr.Measurement(name=MELANOMA_PROBABILITY, value=_rounded(prediction.melanoma_probability), unit=NO_UNITS),
        hd.sr.Measurement(
            name=MELANOMA_CALL_THRESHOLD[prediction.suspicious],
            value=_rounded(prediction.operating_threshold),
            unit=NO_UNITS,
        ),
    ]


def _called_class_concept(label: ClassLabel) -> hd.sr.CodedConcept:
    """Private concept "Called class: <Code Meaning>" (99DERMN CALL-<code value>), one per class code."""
    return hd.sr.CodedConcept(
        value=f"CALL-{label.code.value}",
        scheme_designator=LOCAL_SCHEME,
        meaning=f"Called class: {label.code.meaning}"[:64],
    )


def _melanoma_call(prediction: LesionPrediction) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(
        name=SUSPICIOUS_FOR_MELANOMA, value=POSITIVE if prediction.suspicious else NEGATIVE
    )


def _features(source: Dataset, prediction: LesionPrediction, rgb: npt.NDArray[np.uint8] | None) -> LesionMeasurements:
    if rgb is None and "PixelData" in source:
        rgb = rgb_pixels(source)
    spacing = source.get("PixelSpacing")
    pixel_spacing = (float(spacing[0]), float(spacing[1])) if _calibrated(source) else None
    return measure_lesion(prediction.mask, rgb, pixel_spacing)


def _area(value: float, calibrated: bool) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=codes.SCT.Area, value=value, unit=SQUARE_MILLIMETRE if calibrated else PIXELS)


def _calibrated(source: Dataset) -> bool:
    return bool(source.get("PixelSpacing"))


def _algorithm_id(model: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=model.name,
        version=model.version,
        parameters=None if model.trained else ["UNTRAINED placeholder weights"],
        family=codes.cid7162.ArtificialIntelligence,
        manufacturer=MANUFACTURER,
    )


def _finding_sites(source: Dataset) -> list[hd.sr.FindingSite] | None:
    regions = source.get("AnatomicRegionSequence", [])
    if not regions:
        return None
    laterality = {"L": codes.cid244.Left, "R": codes.cid244.Right}.get(str(source.get("ImageLaterality", "")))
    return [
        hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept.from_dataset(item), laterality=laterality)
        for item in regions
    ]


def _melanoma_concept(labels: Sequence[ClassLabel]) -> hd.sr.CodedConcept:
    """The bundle's own melanoma class code when it has one, else SCT 1162635006."""
    for label in labels:
        if label.key.lower() == "mel" or label.code.value == MALIGNANT_MELANOMA.value:
            return _coded(label.code)
    return _coded(MALIGNANT_MELANOMA)


def _coded(code: CodedConcept) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _rounded(value: float | np.floating) -> float:
    """Probabilities to 6 decimals: float32 noise (0.60000002384186) helps no reader."""
    return round(float(value), 6)


def _coding_schemes(predictions: Sequence[LesionPrediction]) -> list[hd.coding_schemes.CodingSchemeIdentificationItem]:
    """Declare our private scheme and any private ("99" prefix, PS3.16 8.1) scheme of the bundle's labels."""
    schemes = [
        hd.coding_schemes.CodingSchemeIdentificationItem(
            designator=LOCAL_SCHEME, name="dermnode private concepts", responsible_organization=MANUFACTURER
        )
    ]
    private = sorted(
        {label.code.scheme for p in predictions for label in p.labels if label.code.scheme.startswith("99")}
    )
    schemes += [
        hd.coding_schemes.CodingSchemeIdentificationItem(designator=scheme, name="model bundle label codes")
        for scheme in private
        if scheme != LOCAL_SCHEME
    ]
    return schemes


def _ascii_limited(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _instance_number(ds: Dataset) -> int:
    value = ds.get("InstanceNumber")
    return int(value) if value not in (None, "") else 0


def _check_inputs(
    sources: Sequence[Dataset],
    segmentations: Sequence[hd.seg.Segmentation],
    predictions: Sequence[LesionPrediction],
    rgb_images: Sequence[npt.NDArray[np.uint8] | None] | None,
) -> None:
    if not sources:
        raise OutputError("Cannot build a report without source images.")
    counts = {len(sources), len(segmentations), len(predictions)}
    if rgb_images is not None:
        counts.add(len(rgb_images))
    if len(counts) != 1:
        raise OutputError(
            f"sources ({len(sources)}), segmentations ({len(segmentations)}) and predictions "
            f"({len(predictions)}) must be aligned one to one."
        )
    studies = {str(ds.StudyInstanceUID) for ds in sources}
    if len(studies) != 1:
        raise OutputError(f"A report covers one study, but the sources belong to {sorted(studies)}.")
    models = {(p.classifier, p.segmenter) for p in predictions}
    if len(models) != 1:
        raise OutputError(
            f"All predictions of a report must come from the same models, got {len(models)} combinations."
        )
    for source, seg in zip(sources, segmentations, strict=True):
        referenced = {uids[2] for uids in seg.get_source_image_uids()}
        if str(source.SOPInstanceUID) not in referenced:
            raise OutputError(f"Segmentation {seg.SOPInstanceUID} does not segment instance {source.SOPInstanceUID}.")
