"""Write-back self-check: every output object is encoded and read back with highdicom before sending.

The worker calls :func:`validate_readback` on each SEG and SR it built; a failure means the object
must not leave the node. The check encodes the object exactly as it will be sent (file format with
meta information), parses it with highdicom's readers, and checks the parts our viewers rely on.
"""

from __future__ import annotations

from io import BytesIO

import highdicom as hd
import numpy as np
from pydicom import Dataset, dcmread

from dermnode.kernel.errors import OutputError

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SR_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
}


def encode(ds: Dataset) -> bytes:
    """The object as a DICOM file (preamble, meta information, data set), as it is stored and sent."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def validate_readback(ds: Dataset) -> Dataset:
    """Encode ``ds``, read it back with highdicom and check it; return the parsed object.

    SEG: highdicom's reader accepts it, it has segments and its pixels decode to the declared size.
    SR: highdicom's reader accepts it, the root is a TID 1500 report (DCM 126000) and every
    measurement group parses. Raises :class:`OutputError` naming the SOP Instance UID otherwise.
    """
    sop_uid = ds.get("SOPInstanceUID", "<no SOP Instance UID>")
    sop_class = str(ds.get("SOPClassUID", ""))
    try:
        raw = encode(ds)
        if sop_class == SEGMENTATION_STORAGE:
            return _check_seg(hd.seg.segread(BytesIO(raw)))
        if sop_class in SR_STORAGE:
            return _check_sr(hd.sr.srread(BytesIO(raw)))
        dcmread(BytesIO(raw))
    except OutputError:
        raise
    except Exception as e:  # any reader failure means the object must not be sent
        raise OutputError(f"Output object {sop_uid} does not read back: {e}") from e
    raise OutputError(f"Output object {sop_uid} has SOP Class {sop_class!r}, which dermnode does not send.")


def _check_seg(seg: hd.seg.Segmentation) -> hd.seg.Segmentation:
    if not seg.get_segment_numbers():
        raise OutputError(f"Segmentation {seg.SOPInstanceUID} read back without segments.")
    pixels = np.asarray(seg.pixel_array)
    if pixels.shape[-2:] != (int(seg.Rows), int(seg.Columns)):
        raise OutputError(
            f"Segmentation {seg.SOPInstanceUID} decodes to shape {pixels.shape}, expected frames of "
            f"{seg.Rows} x {seg.Columns}."
        )
    return seg


def _check_sr(sr: hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR | hd.sr.EnhancedSR) -> Dataset:
    root = sr.ConceptNameCodeSequence[0]
    if (root.CodeValue, root.CodingSchemeDesignator) != ("126000", "DCM"):
        raise OutputError(
            f"Report {sr.SOPInstanceUID} has root concept {root.CodeValue} {root.CodingSchemeDesignator}, "
            "expected DCM 126000 Imaging Measurement Report (TID 1500)."
        )
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups = [
        *report.get_image_measurement_groups(),
        *report.get_planar_roi_measurement_groups(),
    ]
    if not groups:
        raise OutputError(f"Report {sr.SOPInstanceUID} read back without measurement groups.")
    for group in groups:
        if group.tracking_uid is None:
            raise OutputError(f"A measurement group of report {sr.SOPInstanceUID} has no tracking UID.")
    return sr
