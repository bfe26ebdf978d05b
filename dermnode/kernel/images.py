"""What an image must look like for analysis: one definition for intake (refuse) and inference (decode).

Intake (:mod:`dicom_node.intake`) refuses anything outside these before it acknowledges an instance,
so that every acknowledged instance can be decoded by :func:`inference.outputs.pixels.rgb_pixels`.
"""

from __future__ import annotations

#: Colour photometric interpretations decoded to RGB (YBR_* by pydicom or the JPEG 2000 decoder).
COLOUR_PHOTOMETRIC = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"})
#: Grey photometric interpretations, replicated to three channels.
GREY_PHOTOMETRIC = frozenset({"MONOCHROME1", "MONOCHROME2"})
SUPPORTED_PHOTOMETRIC = COLOUR_PHOTOMETRIC | GREY_PHOTOMETRIC
#: Bits Allocated values the decoders and the 8-bit reduction handle.
SUPPORTED_BITS_ALLOCATED = frozenset({8, 16})
#: Default limit on Rows × Columns (50 megapixels; a 150 MB RGB frame once decoded).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
#: Default limit on the time intake may spend decoding one compressed frame (seconds). A lossless JPEG 2000
#: frame at the pixel limit takes about 10 s on one core (extrapolated), JPEG baseline 4.4 s (BENCHMARKS.md).
DEFAULT_MAX_DECODE_S = 30.0
