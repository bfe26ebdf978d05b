"""The SOP classes and transfer syntaxes the node accepts (SCP) and proposes (SCU).

Single source of truth: the AE, the conformance statement test and the sender all read these.
"""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.77.1.7")
VL_PHOTOGRAPHIC_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.77.1.4")
SECONDARY_CAPTURE_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
SEGMENTATION_STORAGE = UID("1.2.840.10008.5.1.4.1.1.66.4")
ENHANCED_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.22")
COMPREHENSIVE_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.33")
COMPREHENSIVE_3D_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.34")

#: Image storage SOP classes accepted as SCP (PS3.4 B.5), dermoscopy first.
ACCEPTED_IMAGE_SOP_CLASSES: tuple[UID, ...] = (
    DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE,
    VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
)

#: Transfer syntaxes accepted for images; each can be decoded by pydicom + pylibjpeg/pyjpegls/Pillow.
ACCEPTED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

#: What we send as SCU: our outputs, in the syntaxes every storage SCP must support first.
PROPOSED_OUTPUT_SOP_CLASSES: tuple[UID, ...] = (
    SEGMENTATION_STORAGE,
    COMPREHENSIVE_SR_STORAGE,
    COMPREHENSIVE_3D_SR_STORAGE,
    ENHANCED_SR_STORAGE,
)
PROPOSED_TRANSFER_SYNTAXES: tuple[UID, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

VERIFICATION_SOP_CLASS = UID("1.2.840.10008.1.1")

#: Our implementation identity, announced in every A-ASSOCIATE (as SCP and as SCU).
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.1.20261125"
IMPLEMENTATION_VERSION_NAME = "DERMNODE_010"
