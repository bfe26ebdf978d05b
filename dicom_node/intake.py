"""Checks on a received instance before it is acknowledged (PS3.4 B.2.3 C-STORE statuses).

A dataset that fails here is refused with a failure status and a log line; the sender keeps it.
Compressed pixel data is decoded in the decode sandbox (:mod:`dicom_node.sandbox`), bounded in time
and memory, never in the node's own process.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom import config as pydicom_config
from pydicom.charset import python_encoding
from pydicom.encaps import generate_fragments
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import validate_value

from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.images import (
    COLOUR_PHOTOMETRIC,
    DEFAULT_MAX_DECODE_S,
    DEFAULT_MAX_IMAGE_PIXELS,
    SUPPORTED_BITS_ALLOCATED,
    SUPPORTED_PHOTOMETRIC,
)
from dermnode.kernel.uids import is_valid_uid
from dicom_node.codestream import CodestreamError, frame_header
from dicom_node.contexts import ACCEPTED_IMAGE_SOP_CLASSES
from dicom_node.sandbox import DecoderDied, DecodeSandbox, DecodeTimeout, SandboxUnavailable
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


#: Value representations whose values analysis converts to numbers (Instance Number, Pixel Spacing...).
_NUMBER_STRINGS = frozenset({"IS", "DS"})
#: Dates and times: the outputs copy and parse them (Patient's Birth Date, Study Date...).
_DATES_AND_TIMES = frozenset({"DA", "DT", "TM"})
#: Nesting depth of sequences beyond which a data set is refused (ours and real images use 2–3).
MAX_SEQUENCE_DEPTH = 16
#: Bytes of a compressed frame searched for its header (JPEG APPn segments before SOF are < 64 KiB each).
_HEADER_BYTES = 1 << 20
_CODECS = {
    "1.2.840.10008.1.2.4.50": "jpeg", "1.2.840.10008.1.2.4.51": "jpeg", "1.2.840.10008.1.2.4.70": "jpeg",
    "1.2.840.10008.1.2.4.80": "jpeg-ls", "1.2.840.10008.1.2.4.81": "jpeg-ls",
    "1.2.840.10008.1.2.4.90": "jpeg2000", "1.2.840.10008.1.2.4.91": "jpeg2000",
}


def _int(ds: Dataset, keyword: str, sop: str) -> int:
    if keyword not in ds:
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: {keyword} is missing for the pixel data"
        )
    value = ds[keyword].value
    if not isinstance(value, int) or isinstance(value, bool):
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: {keyword} must hold one integer"
        )
    return value


def check_pixel_header(ds: Dataset, sop: str, max_image_pixels: int) -> None:
    """Refuse, from the header alone, an image the analysis cannot process (PS3.3 C.7.6.3).

    Single frame; Rows and Columns above 0 with Rows × Columns at most ``max_image_pixels``; a supported
    photometric interpretation with the Samples per Pixel it implies; 8 or 16 bits allocated; and for
    native (uncompressed) data, Pixel Data of exactly the length those attributes give.
    """
    rows, cols = _int(ds, "Rows", sop), _int(ds, "Columns", sop)
    spp, bits = _int(ds, "SamplesPerPixel", sop), _int(ds, "BitsAllocated", sop)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
    frames_value = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames_value if frames_value not in (None, "") else 1)
    except (TypeError, ValueError):
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Number of Frames is not a number"
        ) from None
    if frames != 1:
        raise IntakeError(
            Status.UNSUPPORTED_IMAGE, f"instance {sop}: {frames} frames; only single-frame images are analysed"
        )
    if rows < 1 or cols < 1:
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Rows {rows} x Columns {cols} is empty"
        )
    if rows * cols > max_image_pixels:
        raise IntakeError(
            Status.IMAGE_TOO_LARGE,
            f"instance {sop}: {rows} x {cols} = {rows * cols} pixels exceeds the limit of {max_image_pixels} "
            "(max_image_pixels)",
        )
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise IntakeError(
            Status.UNSUPPORTED_IMAGE,
            f"instance {sop}: Photometric Interpretation {photometric!r} is not analysed; supported: "
            f"{', '.join(sorted(SUPPORTED_PHOTOMETRIC))}",
        )
    expected_spp = 3 if photometric in COLOUR_PHOTOMETRIC else 1
    if spp != expected_spp:
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"instance {sop}: Samples per Pixel {spp} contradicts Photometric Interpretation {photometric}",
        )
    if bits not in SUPPORTED_BITS_ALLOCATED:
        raise IntakeError(
            Status.UNSUPPORTED_IMAGE, f"instance {sop}: Bits Allocated {bits} is not 8 or 16"
        )
    stored = _int(ds, "BitsStored", sop)
    if not 1 <= stored <= bits:
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Bits Stored {stored!r} is not 1..{bits}"
        )
    if spp == 3 and ds.get("PlanarConfiguration", 0) not in (0, 1):
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Planar Configuration is not 0 or 1"
        )
    if ds.get("PixelRepresentation", 0) not in (0, 1):
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Pixel Representation is not 0 or 1"
        )
    if "PixelData" not in ds:
        raise IntakeError(Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Pixel Data is missing")
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        expected = rows * cols * spp * bits // 8
        if photometric == "YBR_FULL_422":
            expected = rows * cols * 2 * bits // 8  # PS3.3 C.7.6.3.1.2: two samples per pixel stored
        actual = len(ds.PixelData)
        if actual not in (expected, expected + expected % 2):
            raise IntakeError(
                Status.CANNOT_UNDERSTAND,
                f"instance {sop}: Pixel Data has {actual} bytes, {rows}x{cols}x{spp} at {bits} bits "
                f"needs {expected}",
            )


def check_frame_header(ds: Dataset, sop: str, max_image_pixels: int) -> None:
    """Compare a compressed frame's own header with Rows, Columns and the limit, before any decoder runs."""
    syntax = ds.file_meta.TransferSyntaxUID
    codec = _CODECS.get(str(syntax))
    if codec is None:
        return  # RLE: no dimensions in the stream; its decoder is bounded by Rows x Columns
    try:
        fragments = generate_fragments(ds.PixelData)
        next(fragments)  # the Basic Offset Table item (PS3.5 A.4)
        head = b""
        for fragment in fragments:  # a frame may span fragments; its header lies in the first bytes
            head += fragment[: _HEADER_BYTES - len(head)]
            if len(head) >= _HEADER_BYTES:
                break
        header = frame_header(head, codec)
    except (CodestreamError, ValueError, StopIteration) as e:
        raise IntakeError(
            Status.CANNOT_UNDERSTAND, f"instance {sop}: the {syntax.name} frame header cannot be read: {e}"
        ) from e
    if header.rows * header.columns > max_image_pixels:
        raise IntakeError(
            Status.IMAGE_TOO_LARGE,
            f"instance {sop}: the compressed frame claims {header.rows} x {header.columns} pixels, more than "
            f"the limit of {max_image_pixels} (max_image_pixels)",
        )
    if (header.rows, header.columns) != (int(ds.Rows), int(ds.Columns)) or header.components != int(
        ds.SamplesPerPixel
    ):
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"instance {sop}: the compressed frame is {header.rows} x {header.columns} x {header.components}, "
            f"the data set says {ds.Rows} x {ds.Columns} x {ds.SamplesPerPixel}",
        )


def check_pixels(
    ds: Dataset,
    sop: str,
    path: Path,
    sandbox: DecodeSandbox,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_decode_s: float = DEFAULT_MAX_DECODE_S,
) -> None:
    """Refuse pixel data that analysis cannot decode.

    Native data: the header checks (exact length) are what decoding would do. Compressed data: the
    frame header is checked first (memory), then the frame at ``path`` is decoded in the decode
    sandbox with at most ``max_decode_s`` seconds and :func:`decoder_address_space` bytes; a decode
    that runs past its time, dies, or does not give the header's shape is refused.
    """
    check_pixel_header(ds, sop, max_image_pixels)
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_encapsulated:
        return
    check_frame_header(ds, sop, max_image_pixels)
    try:
        decoded = sandbox.decode(path, max_decode_s, decoder_address_space(max_image_pixels), label=sop)
    except DecodeTimeout as e:
        raise IntakeError(
            Status.CANNOT_UNDERSTAND,
            f"instance {sop}: pixel data in {syntax.name} was not decoded within {max_decode_s:g} s "
            "(max_decode_s); the decoder was stopped",
        ) from e
    except DecoderDied as e:
        raise IntakeError(
            Status.CANNOT_UNDERSTAND, f"instance {sop}: pixel data in {syntax.name} cannot be decoded: {e}"
        ) from e
    if decoded.error is not None:
        raise IntakeError(
            Status.CANNOT_UNDERSTAND,
            f"instance {sop}: pixel data in {syntax.name} cannot be decoded: {decoded.error}",
        )
    expected = (int(ds.Rows), int(ds.Columns)) + ((3,) if int(ds.SamplesPerPixel) == 3 else ())
    if decoded.shape != expected:
        raise IntakeError(
            Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"instance {sop}: pixel data decoded to shape {decoded.shape}, expected {expected}",
        )


def check_character_set(ds: Dataset, sop: str) -> None:
    """Refuse a Specific Character Set that pydicom cannot decode (PS3.3 C.12.1.1.2)."""
    value = ds.get("SpecificCharacterSet", "")
    terms = [str(t).strip() for t in (value if isinstance(value, list | MultiValue) else [value])]
    unknown = [t for t in terms if t and t not in python_encoding]
    if unknown:
        raise IntakeError(
            Status.UNSUPPORTED_CHARACTER_SET,
            f"instance {sop}: Specific Character Set {', '.join(repr(t) for t in unknown)} is not supported",
        )


def check_elements(ds: Dataset, sop: str, depth: int = 0) -> None:
    """Convert every element (so a malformed one is found now, not in analysis) and bound the nesting.

    Messages name the tag, never the value: a value may be a patient identifier.
    """
    if depth > MAX_SEQUENCE_DEPTH:
        raise IntakeError(
            Status.CANNOT_UNDERSTAND, f"instance {sop}: sequences nested deeper than {MAX_SEQUENCE_DEPTH}"
        )
    for tag in list(ds.keys()):
        try:
            element = ds[tag]
        except Exception as e:  # pydicom raises many types for a malformed value
            raise IntakeError(
                Status.CANNOT_UNDERSTAND, f"instance {sop}: element {tag} cannot be read ({type(e).__name__})"
            ) from e
        if element.VR in _NUMBER_STRINGS:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            if any(isinstance(v, str) and v.strip() for v in values):  # pydicom kept what it could not convert
                raise IntakeError(
                    Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                    f"instance {sop}: element {tag} ({element.VR}) does not hold a number",
                )
        if element.VR in _DATES_AND_TIMES:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            try:
                for v in values:
                    validate_value(element.VR, v, pydicom_config.RAISE)
            except ValueError as e:
                raise IntakeError(
                    Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                    f"instance {sop}: element {tag} ({element.VR}) is not a valid {element.VR} value",
                ) from e
        if element.VR == "SQ":
            for item in element.value:
                check_elements(item, sop, depth + 1)


def max_dataset_bytes(max_image_pixels: int) -> int:
    """Largest data set read into memory: a 16-bit RGB image at the pixel limit plus 16 MiB of attributes."""
    return max_image_pixels * 3 * 2 + (16 << 20)


#: Address space of a decoder process besides the decoding: the interpreter, numpy, pydicom and the
#: decoder libraries (about 200 MiB measured), with room for the C libraries' threads and arenas.
DECODER_BASE_BYTES = 1 << 30
#: Address space a decode may take per pixel: the largest peak measured, 79 bytes for 16-bit JPEG 2000
#: (8-bit JPEG 2000 48, JPEG baseline 28, JPEG-LS 19; BENCHMARKS.md), with a margin.
DECODER_BYTES_PER_PIXEL = 96


def decoder_address_space(max_image_pixels: int) -> int:
    """The ``RLIMIT_AS`` of a decoder process: enough for any valid frame at the pixel limit, no more
    (5.5 GiB at the default 50 MP)."""
    return DECODER_BASE_BYTES + DECODER_BYTES_PER_PIXEL * max_image_pixels


def check_size(path: Path, sop: str, max_image_pixels: int) -> None:
    """Refuse, before parsing, a file (or its inflated deflated data set) larger than the bound."""
    limit = max_dataset_bytes(max_image_pixels)
    size = path.stat().st_size
    if size > limit:
        raise IntakeError(Status.IMAGE_TOO_LARGE, f"instance {sop}: {size} bytes exceeds the bound of {limit}")
    meta = read_file_meta_info(path)
    if str(meta.get("TransferSyntaxUID", "")) != DeflatedExplicitVRLittleEndian:
        return
    # Preamble (128) + "DICM" (4) + the group length element (12, type 1, first) + the rest of group 2.
    start = 132 + 12 + int(meta.get("FileMetaInformationGroupLength", 0))
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read()
    inflater, inflated = zlib.decompressobj(-zlib.MAX_WBITS), 0
    pending = raw
    while pending and inflated <= limit:  # in 1 MiB steps: the bomb is measured, never held
        inflated += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
    if inflated > limit:
        raise IntakeError(
            Status.IMAGE_TOO_LARGE, f"instance {sop}: the deflated data set inflates beyond the bound of {limit} bytes"
        )


def check_received(
    path: Path,
    affected_sop_class: str,
    affected_sop_instance: str,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    *,
    sandbox: DecodeSandbox,
    max_decode_s: float = DEFAULT_MAX_DECODE_S,
) -> CheckedInstance:
    """Parse and check a received Part 10 file; raise :class:`IntakeError` with the status to return.

    Memory is bounded before anything is decoded: the file size (and a deflated data set's inflated
    size) by :func:`max_dataset_bytes`, pixels by ``max_image_pixels`` from the header and from a
    compressed frame's own header. Compressed pixel data is then decoded in ``sandbox``, bounded by
    ``max_decode_s`` and :func:`decoder_address_space`. Error messages name tags and UIDs, never
    attribute values. Raises :class:`~dicom_node.sandbox.SandboxUnavailable` (not the instance's
    fault: "out of resources") when no decoder process can be had.
    """
    sop = affected_sop_instance or "(no SOP Instance UID)"
    try:
        check_size(path, sop, max_image_pixels)
        ds = dcmread(path)
        ds.SOPClassUID  # noqa: B018  (forces the deferred parse of the first elements)
    except IntakeError:
        raise
    except Exception as e:  # e.g. InvalidDicomError, or RecursionError from absurd nesting: refuse, never crash
        # The exception's text may quote a value (a patient identifier): only its type is logged.
        raise IntakeError(
            Status.CANNOT_UNDERSTAND, f"instance {sop}: the data set cannot be parsed ({type(e).__name__})"
        ) from e
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
        if not str(ds.get("Modality", "") or "").strip():
            raise IntakeError(
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"instance {sop}: Modality is missing; it is required"
            )
        study = _uid(ds, "StudyInstanceUID", sop)
        series = _uid(ds, "SeriesInstanceUID", sop)
        check_character_set(ds, sop)
        check_elements(ds, sop)
        check_pixels(ds, sop, path, sandbox, max_image_pixels, max_decode_s)
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
    except (IntakeError, SandboxUnavailable):
        raise
    except Exception as e:  # a malformed element surfaces on access; refuse, never crash the node
        raise IntakeError(
            Status.CANNOT_UNDERSTAND, f"instance {sop}: malformed data set ({type(e).__name__})"
        ) from e
