"""DICOM Segmentation objects (PS3.3 A.51) for one dermoscopy image.

Three objects per source image, because one SEG instance has exactly one Segmentation Type:

* :func:`build_segmentation`: BINARY, segment 1 "Lesion" (the segmenter's mask);
* :func:`build_attention_segmentation`: FRACTIONAL (PROBABILITY), segment 1 "Classifier attention"
  (the classifier's Grad-CAM map), in its own series: the faithful object;
* :func:`build_attention_levels_segmentation`: BINARY, three disjoint segments, the pixels in the top
  10 %, the next 15 % and the next 25 % of the same map, in its own series: the form viewers display
  (OHIF 3.x does not show FRACTIONAL SEGs). Segments 1..k together are the top 10/25/50 %.

Both are made by highdicom from the source image, so patient, study, specimen and character-set
attributes come from the source; the gaps highdicom leaves are closed in :mod:`inference.outputs.hd_compat`.
UIDs are deterministic (:func:`inference.outputs.identity.derive_uid`): the same source and model version give
the same instance, so a retried task replaces rather than duplicates its output.
"""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from dermnode.kernel.errors import OutputError
from inference.models.prediction import LesionPrediction, ModelIdentity
from inference.outputs.conventions import (
    ATTENTION_LEVELS_SEG_SERIES_NUMBER,
    ATTENTION_SEG_SERIES_NUMBER,
    LESION_SEG_SERIES_NUMBER,
    MANUFACTURER,
    NOT_FOR_DIAGNOSIS,
    OUTPUT_CHARACTER_SET,
    lesion_tracking_id,
    lesion_tracking_uid,
    series_description,
    short_description,
)
from inference.outputs.hd_compat import (
    add_viewer_functional_groups,
    copy_patient_orientation,
    derive_dimension_organization,
    stamp_creation,
)
from inference.outputs.identity import DEFAULT_UID_PREFIX, derive_uid

LESION_SEGMENT_NUMBER = 1

# CID 7150 / CID 7151 (both in pydicom's dictionaries).
LESION_CATEGORY = hd.sr.CodedConcept("49755003", "SCT", "Morphologically abnormal structure")
LESION_TYPE = hd.sr.CodedConcept("52988006", "SCT", "Lesion")
# The attention map is not a structure: category "Spatial and Relational Concept" (CID 7150) and
# type DCM 130403 "Gradient-weighted class activation" (CID 7180), both in pydicom's dictionaries.
ATTENTION_CATEGORY = hd.sr.CodedConcept("309825002", "SCT", "Spatial and Relational Concept")
ATTENTION_TYPE = hd.sr.CodedConcept("130403", "DCM", "Gradient-weighted class activation")
# Attention levels: cumulative top shares of the image's pixels by attention, as disjoint bands.
ATTENTION_LEVELS_PERCENT = (10, 25, 50)
# Recommended display colours (CIELab via sRGB): red, orange, yellow, hottest first.
_LEVEL_COLOURS = ((220, 20, 20), (255, 140, 0), (255, 230, 0))
#: Recommended display colours (sRGB) of the lesion and the fractional attention segment: viewers draw
#: them in these colours instead of warning that none was recommended (OHIF does, over the image).
LESION_COLOUR = (0, 200, 0)
ATTENTION_COLOUR = (255, 140, 0)


def lesion_seg_uids(source: Dataset, model: ModelIdentity, prefix: str = DEFAULT_UID_PREFIX) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the lesion SEG of ``source``."""
    return _uids("seg-lesion", source, model, prefix)


def attention_seg_uids(source: Dataset, model: ModelIdentity, prefix: str = DEFAULT_UID_PREFIX) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the attention SEG of ``source``."""
    return _uids("seg-attention", source, model, prefix)


def attention_levels_seg_uids(
    source: Dataset, model: ModelIdentity, prefix: str = DEFAULT_UID_PREFIX
) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the attention-levels SEG of ``source``."""
    return _uids("seg-attention-levels", source, model, prefix)


def _uids(kind: str, source: Dataset, model: ModelIdentity, prefix: str) -> tuple[str, str]:
    # One series per study and model; one instance per source image and model version.
    series = derive_uid(f"{kind}-series", [str(source.StudyInstanceUID), model.name], prefix)
    instance = derive_uid(kind, [str(source.SOPInstanceUID), model.name, model.version], prefix)
    return str(series), str(instance)


def build_segmentation(
    source: Dataset,
    prediction: LesionPrediction,
    *,
    content_datetime: datetime,
    uid_prefix: str = DEFAULT_UID_PREFIX,
    series_number: int = LESION_SEG_SERIES_NUMBER,
    device_serial_number: str = "1",
) -> hd.seg.Segmentation:
    """BINARY SEG with segment 1 "Lesion" equal to ``prediction.mask``, pixel for pixel."""
    mask = _checked_plane(source, prediction.mask, "mask")
    model = prediction.segmenter
    series_uid, sop_uid = lesion_seg_uids(source, model, uid_prefix)
    segment = hd.seg.SegmentDescription(
        segment_number=LESION_SEGMENT_NUMBER,
        segment_label="Lesion",
        segmented_property_category=LESION_CATEGORY,
        segmented_property_type=LESION_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(model),
        tracking_uid=lesion_tracking_uid(source, uid_prefix),
        tracking_id=lesion_tracking_id(source),
        anatomic_regions=_anatomic_regions(source),
        display_color=hd.color.CIELabColor.from_rgb(*LESION_COLOUR),
    )
    return _build(
        source,
        mask.astype(np.uint8)[np.newaxis],
        hd.seg.SegmentationTypeValues.BINARY,
        segment,
        model,
        series_uid=series_uid,
        sop_uid=sop_uid,
        series_number=series_number,
        description=series_description(model, kind="Lesion SEG"),
        content_label="LESION",
        content_datetime=content_datetime,
        device_serial_number=device_serial_number,
        uid_prefix=uid_prefix,
    )


def build_attention_segmentation(
    source: Dataset,
    prediction: LesionPrediction,
    *,
    content_datetime: datetime,
    uid_prefix: str = DEFAULT_UID_PREFIX,
    series_number: int = ATTENTION_SEG_SERIES_NUMBER,
    device_serial_number: str = "1",
) -> hd.seg.Segmentation:
    """FRACTIONAL (PROBABILITY) SEG of the classifier's Grad-CAM attention, quantised to 0..255.

    Raises :class:`OutputError` when the prediction carries no attention map.
    """
    if prediction.attention is None:
        raise OutputError(
            f"Cannot build an attention SEG for instance {source.SOPInstanceUID}: the prediction has no attention map."
        )
    attention = _checked_plane(source, prediction.attention, "attention")
    if not np.all(np.isfinite(attention)) or attention.min() < 0.0 or attention.max() > 1.0:
        raise OutputError(f"The attention map for instance {source.SOPInstanceUID} must be finite and within [0, 1].")
    model = prediction.classifier
    series_uid, sop_uid = attention_seg_uids(source, model, uid_prefix)
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Classifier attention",
        segmented_property_category=ATTENTION_CATEGORY,
        segmented_property_type=ATTENTION_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(model),
        anatomic_regions=_anatomic_regions(source),
        display_color=hd.color.CIELabColor.from_rgb(*ATTENTION_COLOUR),
    )
    return _build(
        source,
        attention.astype(np.float32)[np.newaxis],
        hd.seg.SegmentationTypeValues.FRACTIONAL,
        segment,
        model,
        series_uid=series_uid,
        sop_uid=sop_uid,
        series_number=series_number,
        description=series_description(model, kind="Attention SEG"),
        content_label="ATTENTION",
        content_datetime=content_datetime,
        device_serial_number=device_serial_number,
        uid_prefix=uid_prefix,
    )


def build_attention_levels_segmentation(
    source: Dataset,
    prediction: LesionPrediction,
    *,
    content_datetime: datetime,
    uid_prefix: str = DEFAULT_UID_PREFIX,
    series_number: int = ATTENTION_LEVELS_SEG_SERIES_NUMBER,
    device_serial_number: str = "1",
) -> hd.seg.Segmentation:
    """BINARY SEG of the classifier's attention in three disjoint bands a viewer can display.

    Segment 1 "Attention top 10 %", segment 2 "Attention top 10-25 %", segment 3 "Attention top
    25-50 %" (see :func:`attention_levels`). Raises :class:`OutputError` when the prediction carries
    no attention map.
    """
    if prediction.attention is None:
        raise OutputError(
            f"Cannot build an attention-levels SEG for instance {source.SOPInstanceUID}: "
            "the prediction has no attention map."
        )
    attention = _checked_plane(source, prediction.attention, "attention")
    bands = attention_levels(attention)
    model = prediction.classifier
    series_uid, sop_uid = attention_levels_seg_uids(source, model, uid_prefix)
    labels = []
    previous = 0
    for percent in ATTENTION_LEVELS_PERCENT:
        labels.append(f"Attention top {percent} %" if previous == 0 else f"Attention top {previous}-{percent} %")
        previous = percent
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=ATTENTION_CATEGORY,
            segmented_property_type=ATTENTION_TYPE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(model),
            anatomic_regions=_anatomic_regions(source),
            display_color=hd.color.CIELabColor.from_rgb(*colour),
        )
        for number, (label, colour) in enumerate(zip(labels, _LEVEL_COLOURS, strict=True), start=1)
    ]
    return _build(
        source,
        np.stack(bands, axis=-1)[np.newaxis].astype(np.uint8),
        hd.seg.SegmentationTypeValues.BINARY,
        segments,
        model,
        series_uid=series_uid,
        sop_uid=sop_uid,
        series_number=series_number,
        description=series_description(model, kind="Attention levels SEG"),
        content_label="ATTENTION_LEVELS",
        content_datetime=content_datetime,
        device_serial_number=device_serial_number,
        uid_prefix=uid_prefix,
    )


def attention_levels(attention: np.ndarray) -> list[np.ndarray]:
    """Disjoint boolean bands of ``attention`` by rank: top 10 %, next 15 %, next 25 % of the pixels.

    A pixel is in the top p % when its value reaches the (100 - p)th percentile of the map and is above
    0 (pixels without attention are in no band); ties at a percentile fall into the higher band.
    """
    bands: list[np.ndarray] = []
    covered = np.zeros(attention.shape, dtype=bool)
    for percent in ATTENTION_LEVELS_PERCENT:
        level = (attention >= np.percentile(attention, 100 - percent)) & (attention > 0)
        bands.append(level & ~covered)
        covered |= level
    return bands


def _build(
    source: Dataset,
    pixels: np.ndarray,
    segmentation_type: hd.seg.SegmentationTypeValues,
    segment: hd.seg.SegmentDescription | list[hd.seg.SegmentDescription],
    model: ModelIdentity,
    *,
    series_uid: str,
    sop_uid: str,
    series_number: int,
    description: str,
    content_label: str,
    content_datetime: datetime,
    device_serial_number: str,
    uid_prefix: str,
) -> hd.seg.Segmentation:
    equipment = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=model.name,
        software_versions=model.version,
        contribution_datetime=content_datetime,
        contribution_description=f"{model.label}; {NOT_FOR_DIAGNOSIS}",  # ST: no 64-character limit
    )
    try:
        seg = hd.seg.Segmentation(
            source_images=[source],
            pixel_array=pixels,
            segmentation_type=segmentation_type,
            segment_descriptions=segment if isinstance(segment, list) else [segment],
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_uid,
            instance_number=int(source.get("InstanceNumber", 1) or 1),
            manufacturer=MANUFACTURER,
            manufacturer_model_name=model.name[:64],
            software_versions=model.version[:64],
            device_serial_number=device_serial_number,
            max_fractional_value=255,
            content_description=short_description(model),
            content_label=content_label,
            pixel_measures=_pixel_measures(source),
            omit_empty_frames=False,
            series_description=description,
            content_date=content_datetime.date(),
            content_time=content_datetime.time(),
            series_date=content_datetime.date(),
            series_time=content_datetime.time(),
            contributing_equipment=[equipment],
            specific_character_set=OUTPUT_CHARACTER_SET,
        )
    except (ValueError, TypeError, AttributeError) as e:
        raise OutputError(f"Could not build a SEG for instance {source.SOPInstanceUID}: {e}") from e
    copy_patient_orientation(seg, source)
    add_viewer_functional_groups(seg)
    stamp_creation(seg, content_datetime)
    derive_dimension_organization(seg, uid_prefix)
    return seg


def _checked_plane(source: Dataset, plane: np.ndarray, what: str) -> np.ndarray:
    expected = (int(source.Rows), int(source.Columns))
    if plane.shape != expected:
        raise OutputError(
            f"The {what} for instance {source.SOPInstanceUID} has shape {plane.shape}, but the image "
            f"has {expected[0]} rows and {expected[1]} columns."
        )
    return plane


def _algorithm(model: ModelIdentity) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=model.name[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=model.version[:64],
        source=MANUFACTURER,
        parameters=None if model.trained else {"weights": "UNTRAINED placeholder"},
    )


def _pixel_measures(source: Dataset) -> hd.PixelMeasuresSequence | None:
    # DESIGN.md: with PixelSpacing on the source, highdicom's reader needs pixel measures with a
    # slice thickness; a photograph has none, so 1 mm is a nominal value.
    if "PixelSpacing" not in source:
        return None
    spacing = [float(v) for v in source.PixelSpacing]
    return hd.PixelMeasuresSequence(pixel_spacing=spacing, slice_thickness=1.0)


def _anatomic_regions(source: Dataset) -> list[hd.sr.CodedConcept] | None:
    regions = [hd.sr.CodedConcept.from_dataset(item) for item in source.get("AnatomicRegionSequence", [])]
    return regions or None
