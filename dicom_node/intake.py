"""Checks on a received instance before it is acknowledged (PS3.4 B.2.3 C-STORE statuses).

A dataset that fails here is refused with a failure status and a log line; the sender keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.uids import is_valid_uid
from dicom_node.contexts import ACCEPTED_IMAGE_SOP_CLASSES
from dicom_node.status import Status


class IntakeError(DermnodeError):
    """A received dataset is refused; ``status`` is the DIMSE failure status to return."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CheckedInstance:
    dataset: Dataset
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    patient_id: str
    accession: str


def _uid(ds: Dataset, keyword: str, sop: str) -> str:
    value = str(ds.get(keyword, "") or "").strip()
    if not value:
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: {keyword} is missing; it is required"
        )
    if not is_valid_uid(value):
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: {keyword} {value!r} is not a valid UID"
        )
    return value


def check_pixels(ds: Dataset, sop: str) -> None:
    """Refuse pixel data that cannot be decoded (decoding native data is a length check)."""
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PhotometricInterpretation"):
        if keyword not in ds:
            raise IntakeError(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: {keyword} is missing for the pixel data"
            )
    if "PixelData" not in ds:
        raise IntakeError(Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Pixel Data is missing")
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.pixel_array  # noqa: B018  (decodes; raises on a corrupt stream)
        else:
            rows, cols = int(ds.Rows), int(ds.Columns)
            spp, bits = int(ds.SamplesPerPixel), int(ds.BitsAllocated)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            expected = rows * cols * spp * frames * bits // 8
            actual = len(ds.PixelData)
            if actual < expected:
                raise IntakeError(
                    Status.CANNOT_UNDERSTAND,
                    f"instance {sop}: Pixel Data has {actual} bytes, {rows}x{cols}x{spp} at {bits} bits "
                    f"needs {expected}",
                )
    except IntakeError:
        raise
    except Exception as e:  # pixel handlers raise many types; every one means "cannot decode"
        raise IntakeError(
            Status.CANNOT_UNDERSTAND,
            f"instance {sop}: pixel data in {ds.file_meta.TransferSyntaxUID.name} cannot be decoded: {e}",
        ) from e


def check_received(path: Path, affected_sop_class: str, affected_sop_instance: str) -> CheckedInstance:
    """Parse and check a received Part 10 file; raise :class:`IntakeError` with the status to return."""
    sop = affected_sop_instance or "(no SOP Instance UID)"
    try:
        ds = dcmread(path)
        ds.SOPClassUID  # noqa: B018  (forces the deferred parse of the first elements)
    except (InvalidDicomError, EOFError, ValueError, KeyError, AttributeError, OSError) as e:
        raise IntakeError(Status.CANNOT_UNDERSTAND, f"instance {sop}: the data set cannot be parsed: {e}") from e
    try:
        sop_class = _uid(ds, "SOPClassUID", sop)
        sop_instance = _uid(ds, "SOPInstanceUID", sop)
        if sop_class != affected_sop_class:
            raise IntakeError(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"instance {sop}: SOP Class UID {sop_class} in the data set differs from the request's "
                f"{affected_sop_class}",
            )
        if sop_class not in ACCEPTED_IMAGE_SOP_CLASSES:
            raise IntakeError(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"instance {sop}: SOP class {sop_class} is not a dermoscopy, VL photographic or secondary "
                "capture image",
            )
        if sop_instance != affected_sop_instance:
            raise IntakeError(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"instance {sop}: SOP Instance UID {sop_instance} in the data set differs from the request",
            )
        study = _uid(ds, "StudyInstanceUID", sop)
        series = _uid(ds, "SeriesInstanceUID", sop)
        check_pixels(ds, sop)
        return CheckedInstance(
            dataset=ds,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            study_uid=study,
            series_uid=series,
            transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
            patient_id=str(ds.get("PatientID", "") or ""),
            accession=str(ds.get("AccessionNumber", "") or ""),
        )
    except IntakeError:
        raise
    except Exception as e:  # a malformed element surfaces on access; refuse, never crash the node
        raise IntakeError(Status.CANNOT_UNDERSTAND, f"instance {sop}: malformed data set: {e}") from e
