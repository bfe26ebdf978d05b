"""Small synthetic dermoscopy DICOM made by our own code, for unit and network tests.

The image is a brownish ellipse ("lesion") on a skin-coloured background, so segmentation output
has something to find; ``lesion_mask`` returns the ground-truth ellipse in the same pixel grid.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

DERMOSCOPY_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.7"
VL_PHOTOGRAPHIC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY_CAPTURE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def lesion_mask(rows: int, columns: int, shift: tuple[int, int] = (0, 0)) -> npt.NDArray[np.bool_]:
    """An off-centre ellipse: asymmetric on purpose, so a flip or shift of the overlay is detectable."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    cy, cx = rows * 0.45 + shift[0], columns * 0.55 + shift[1]
    ry, rx = rows * 0.22, columns * 0.28
    return bool_array(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0)


def bool_array(a: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return np.asarray(a, dtype=bool)


def lesion_image(rows: int = 96, columns: int = 128, seed: int = 0) -> npt.NDArray[np.uint8]:
    """An 8-bit RGB (rows, columns, 3) picture of a dark lesion on skin, with a little noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((rows, columns, 3), dtype=np.float32)
    img[...] = (224.0, 172.0, 150.0)
    mask = lesion_mask(rows, columns)
    img[mask] = (110.0, 70.0, 50.0)
    img += rng.normal(0.0, 6.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def dermoscopy_dataset(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    sop_class_uid: str = DERMOSCOPY_SOP_CLASS,
    rows: int = 96,
    columns: int = 128,
    seed: int = 0,
    patient_id: str = "DERM-0001",
    patient_name: str = "Test^Patient",
    accession: str = "ACC0001",
    instance_number: int = 1,
    pixel_spacing_mm: float | None = 0.02,
    laterality: str = "L",
) -> Dataset:
    """A complete, valid single-frame RGB dermoscopy instance with explicit VR little endian meta."""
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    sop_instance_uid = sop_instance_uid or generate_uid()
    when = dt.datetime(2026, 11, 25, 10, 30, 0)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.AccessionNumber = accession
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.Manufacturer = "dermnode-tests"
    ds.ManufacturerModelName = "synthetic-dermatoscope"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "1"
    ds.PatientOrientation = ""
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.AcquisitionContextSequence = []
    if sop_class_uid == DERMOSCOPY_SOP_CLASS:
        ds.Modality = "DMS"
        ds.RecognizableVisualFeatures = "NO"
        ds.LightSourcePolarization = "POLARIZED"
        ds.ContactMethod = "NON_CONTACT"
        ds.EmitterColorTemperature = 4500
        ds.OpticalMagnificationFactor = 10
    elif sop_class_uid == VL_PHOTOGRAPHIC_SOP_CLASS:
        ds.Modality = "XC"
    else:
        ds.Modality = "OT"
        ds.ConversionType = "DI"
    anat = Dataset()
    anat.CodeValue = "39937001"
    anat.CodingSchemeDesignator = "SCT"
    anat.CodeMeaning = "Skin structure"
    ds.AnatomicRegionSequence = [anat]

    pixels = lesion_image(rows, columns, seed)
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if pixel_spacing_mm is not None:
        ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    ds.PixelData = pixels.tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def write_study(
    directory: Path, n_images: int = 2, study_uid: str | None = None, **kwargs: object
) -> list[Path]:
    """Write ``n_images`` instances of one study (one series) as DICOM files; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    paths = []
    for i in range(n_images):
        ds = dermoscopy_dataset(
            study_uid=study_uid, series_uid=series_uid, instance_number=i + 1, seed=i, **kwargs  # type: ignore[arg-type]
        )
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# Encodings that ``encoded_dermoscopy_file`` can produce; the lossy ones are only close to the original.
ENCODINGS = (
    "native-rgb",
    "native-planar1",
    "native-ybr-full",
    "monochrome2",
    "jpeg-baseline",
    "jpeg-baseline-444",
    "jpeg-baseline-rgb",
    "jpeg-ls",
    "j2k-rct",
    "j2k-ict",
)
LOSSY_ENCODINGS = frozenset(
    {"native-ybr-full", "jpeg-baseline", "jpeg-baseline-444", "jpeg-baseline-rgb", "j2k-ict"}
)


def encoded_dermoscopy_file(directory: Path, encoding: str, **kwargs: object) -> Path:
    """Write ``dermoscopy_dataset(**kwargs)`` in one of ``ENCODINGS`` and return the file's path.

    JPEG baseline (YBR_FULL_422, YBR_FULL with "-444", untransformed RGB with "-rgb") and JPEG-LS are made by DCMTK
    (``dcmcjpeg +eb +un``, which keeps the SOP Instance UID, and ``dcmcjpls``) because pydicom cannot
    encode JPEG baseline; JPEG 2000 is made by pydicom with the multiple-component transform
    (Photometric Interpretation YBR_RCT / YBR_ICT).
    """
    import subprocess

    from pydicom.pixels import convert_color_space
    from pydicom.uid import JPEG2000, JPEG2000Lossless

    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    directory.mkdir(parents=True, exist_ok=True)
    ds = dermoscopy_dataset(**kwargs)  # type: ignore[arg-type]
    rgb = lesion_image(int(ds.Rows), int(ds.Columns), int(kwargs.get("seed", 0)))  # type: ignore[call-overload]
    native = directory / f"{encoding}-native.dcm"
    path = directory / f"{encoding}.dcm"
    if encoding == "native-planar1":
        ds.PlanarConfiguration = 1
        ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    elif encoding == "native-ybr-full":
        ds.PhotometricInterpretation = "YBR_FULL"
        ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.uint8).tobytes()
    elif encoding == "monochrome2":
        grey = rgb.mean(axis=2).round().astype(np.uint8)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        del ds.PlanarConfiguration
        ds.PixelData = grey.tobytes()
    elif encoding in ("j2k-rct", "j2k-ict"):
        lossless = encoding == "j2k-rct"
        if lossless:
            ds.compress(JPEG2000Lossless)
        else:
            ds.compress(JPEG2000, j2k_cr=[20])
        ds.PhotometricInterpretation = "YBR_RCT" if lossless else "YBR_ICT"
        if not lossless:
            ds.LossyImageCompression = "01"
    if encoding in ("jpeg-baseline", "jpeg-baseline-444", "jpeg-baseline-rgb", "jpeg-ls"):
        ds.save_as(native, enforce_file_format=True)
        if encoding == "jpeg-ls":
            cmd = ["dcmcjpls", str(native), str(path)]
        else:
            sampling = {"jpeg-baseline-444": ["+s4"], "jpeg-baseline-rgb": ["+cr"]}.get(encoding, [])
            cmd = ["dcmcjpeg", "+eb", "+un", *sampling, str(native), str(path)]
        subprocess.run(cmd, check=True, capture_output=True)
        native.unlink()
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


def minimal_output_file(directory: Path, sop_class: str = "1.2.840.10008.5.1.4.1.1.88.33") -> Path:
    """A minimal instance of an output SOP class (default Comprehensive SR): enough for a C-STORE,
    not a valid object. For tests of the delivery SCU."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def claim_dimensions(ds: Dataset, rows: int, columns: int) -> Dataset:
    """Rewrite the rows and columns a compressed frame's own header claims (JPEG/JPEG-LS SOF, JPEG 2000 SIZ).

    The stream keeps its length and its few KB of scan data: this is how a decompression bomb is made.
    """
    data = bytearray(ds.PixelData)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xf7"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5 : at + 9] = rows.to_bytes(2, "big") + columns.to_bytes(2, "big")
            break
    else:
        at = data.find(b"\xff\x4f\xff\x51") + 2
        if at < 2:
            raise ValueError("the pixel data holds no JPEG SOF or JPEG 2000 SIZ marker")
        data[at + 6 : at + 14] = columns.to_bytes(4, "big") + rows.to_bytes(4, "big")
    ds.PixelData = bytes(data)
    return ds
