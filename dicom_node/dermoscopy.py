"""Wrap dermatoscope JPEG photographs as Dermoscopic Photography Image Storage instances (DICOM Sup 221).

The JPEG codestream is kept byte for byte (transfer syntax JPEG Baseline, no re-encoding), as a
dermatoscope that speaks DICOM would send it; this is how a site without such a device feeds the node.
Only baseline (or extended 8-bit) sequential JPEGs can be carried as JPEG Baseline: progressive JPEGs
are refused with a message saying how to convert them.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEGBaseline8Bit, generate_uid

from dermnode.kernel.errors import DermnodeError
from dicom_node.contexts import DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE, IMPLEMENTATION_CLASS_UID

_SOF_BASELINE = {0xC0, 0xC1}  # baseline and extended sequential, Huffman
_SOF_OTHER = {0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class JpegError(DermnodeError):
    """The file is not a JPEG that can be carried as DICOM JPEG Baseline."""


@dataclass(frozen=True)
class JpegFrame:
    """What the JPEG's frame header (SOF) declares."""

    rows: int
    columns: int
    components: int
    precision: int
    adobe_rgb: bool


def read_jpeg_frame(data: bytes, name: str = "image") -> JpegFrame:
    """Parse the markers up to the frame header without decoding; raise :class:`JpegError` with advice."""
    if data[:2] != b"\xff\xd8":
        raise JpegError(f"{name} is not a JPEG file (no SOI marker); save the photograph as JPEG first")
    pos, adobe_rgb = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise JpegError(f"{name}: corrupt JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe_rgb = segment[11] == 0  # APP14 colour transform 0: components are RGB
        if marker in _SOF_BASELINE:
            if len(segment) < 6:
                raise JpegError(f"{name}: truncated JPEG frame header")
            precision, rows, columns, components = struct.unpack(">BHHB", segment[:6])
            return JpegFrame(rows, columns, components, precision, adobe_rgb)
        if marker in _SOF_OTHER:
            raise JpegError(
                f"{name} is a progressive, lossless or arithmetic-coded JPEG (SOF 0x{marker:02X}); DICOM JPEG "
                "Baseline needs a baseline JPEG: re-save it as baseline (e.g. `convert in.jpg -interlace none out.jpg`)"
            )
        pos += 2 + length
    raise JpegError(f"{name}: no JPEG frame header found; the file is truncated or not a JPEG")


@dataclass(frozen=True)
class Device:
    """The dermatoscope that took the photographs (Enhanced General Equipment, all type 1)."""

    manufacturer: str = "UNKNOWN"
    model_name: str = "UNKNOWN"
    serial_number: str = "UNKNOWN"
    software_versions: str = "UNKNOWN"


@dataclass(frozen=True)
class Patient:
    """Who the photographs are of (entered by the person wrapping them)."""

    patient_id: str
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""


def wrap_jpeg(
    data: bytes,
    patient: Patient,
    *,
    study_uid: str,
    series_uid: str,
    instance_number: int = 1,
    laterality: str = "",
    accession: str = "",
    name: str = "image",
    device: Device | None = None,
    now: Callable[[], dt.datetime] = dt.datetime.now,
) -> Dataset:
    """A Dermoscopic Photography instance carrying ``data`` (a baseline JPEG) unchanged."""
    frame = read_jpeg_frame(data, name)
    if frame.components != 3 or frame.precision != 8:
        raise JpegError(
            f"{name} has {frame.components} component(s) at {frame.precision} bits; a dermoscopy image is "
            "8-bit colour (3 components)"
        )
    when = now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient.patient_id
    ds.PatientName = patient.patient_name
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.Modality = "DMS"
    device = device or Device()
    ds.Manufacturer = device.manufacturer
    ds.ManufacturerModelName = device.model_name
    ds.DeviceSerialNumber = device.serial_number
    ds.SoftwareVersions = device.software_versions
    ds.PatientOrientation = ""
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    # Dermoscopic Image module, type 2: unknown for a wrapped photograph, so present and empty.
    ds.LightSourcePolarization = ""
    ds.EmitterColorTemperature = None
    ds.ContactMethod = ""
    ds.OpticalMagnificationFactor = None
    ds.AcquisitionContextSequence = []
    anatomy = Dataset()
    anatomy.CodeValue, anatomy.CodingSchemeDesignator, anatomy.CodeMeaning = "39937001", "SCT", "Skin structure"
    ds.AnatomicRegionSequence = [anatomy]
    ds.Rows, ds.Columns = frame.rows, frame.columns
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB" if frame.adobe_rgb else "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    return ds


def wrap_files(
    images: list[Path], out: Path, patient: Patient, *, laterality: str = "", accession: str = "",
    device: Device | None = None,
) -> list[Path]:
    """Wrap ``images`` as one study (one series) into ``out``; returns the written files."""
    study_uid, series_uid = generate_uid(), generate_uid()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, image in enumerate(images, start=1):
        try:
            data = image.read_bytes()
        except OSError as e:
            raise JpegError(f"cannot read {image}: {e.strerror}") from e
        ds = wrap_jpeg(data, patient, study_uid=study_uid, series_uid=series_uid, instance_number=number,
                       laterality=laterality, accession=accession, name=str(image), device=device)
        path = out / f"{image.stem}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written
