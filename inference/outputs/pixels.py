"""Decode the pixel data of an accepted dermoscopy instance to 8-bit RGB.

Accepted (DESIGN.md): Dermoscopic Photography, VL Photographic and Secondary Capture images, single
frame, native or compressed: RGB with PlanarConfiguration 0 or 1, YBR_FULL / YBR_FULL_422 (JPEG
baseline), JPEG-LS, JPEG 2000 (YBR_RCT / YBR_ICT) and MONOCHROME1/2 (replicated to three channels).
Decoding is done by pydicom's pixel handlers (pylibjpeg, pyjpegls, Pillow); pydicom converts
YBR_FULL(_422) to RGB, and the JPEG 2000 decoders undo the RCT/ICT component transform.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.pixels import pixel_array

from dermnode.kernel.errors import InferenceError
from dermnode.kernel.images import COLOUR_PHOTOMETRIC as _COLOUR
from dermnode.kernel.images import GREY_PHOTOMETRIC as _GREY


def _describe(ds: Dataset) -> str:
    sop = ds.get("SOPInstanceUID", "<no SOP Instance UID>")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID", "<no transfer syntax>") if meta is not None else "<no file meta>"
    return f"instance {sop} (transfer syntax {syntax})"


def rgb_pixels(ds: Dataset) -> npt.NDArray[np.uint8]:
    """Return the image of ``ds`` as a C-contiguous uint8 array of shape (rows, columns, 3), RGB.

    Raises :class:`InferenceError` naming the SOP Instance UID and the transfer syntax when the
    pixel data is missing, multi-frame, of an unsupported photometric interpretation, or cannot be
    decoded.
    """
    if "PixelData" not in ds:
        raise InferenceError(f"The {_describe(ds)} has no Pixel Data to decode.")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise InferenceError(
            f"The {_describe(ds)} has {frames} frames; only single-frame dermoscopy images are supported."
        )
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in _COLOUR | _GREY:
        raise InferenceError(
            f"The {_describe(ds)} has Photometric Interpretation {photometric!r}, which is not supported "
            f"(expected one of {sorted(_COLOUR | _GREY)})."
        )
    try:
        # raw=False: pydicom converts YBR_FULL / YBR_FULL_422 to RGB.
        arr = pixel_array(ds, raw=False)
    except Exception as e:  # decoder plugins raise many exception types; all mean "cannot decode"
        raise InferenceError(f"Could not decode the pixel data of the {_describe(ds)}: {e}") from e

    bits_stored = int(ds.get("BitsStored", 8))
    arr = _to_uint8(arr, bits_stored, _describe(ds))
    if photometric in _GREY:
        if arr.ndim != 2:
            raise InferenceError(f"The {_describe(ds)} is {photometric} but decoded to shape {arr.shape}.")
        if photometric == "MONOCHROME1":
            arr = 255 - arr
        arr = np.repeat(arr[:, :, np.newaxis], 3, axis=2)
    expected = (int(ds.Rows), int(ds.Columns), 3)
    if arr.shape != expected:
        raise InferenceError(f"The {_describe(ds)} decoded to shape {arr.shape}, expected {expected}.")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _to_uint8(arr: np.ndarray, bits_stored: int, described: str) -> npt.NDArray[np.uint8]:
    """Bring decoded samples to 8 bits: unchanged for 8-bit data, shifted down for deeper data."""
    if arr.dtype.kind not in "ui":
        raise InferenceError(f"The {described} decoded to {arr.dtype} samples, expected integers.")
    if bits_stored <= 8:
        return np.clip(arr, 0, 255).astype(np.uint8)
    shifted = np.right_shift(np.clip(arr, 0, None).astype(np.int64), bits_stored - 8)
    return np.clip(shifted, 0, 255).astype(np.uint8)
