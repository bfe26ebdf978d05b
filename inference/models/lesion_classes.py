"""The HAM10000 diagnostic classes and their SNOMED CT codes, shared by bundle builders and training.

Code provenance (checked against pydicom 3.0.2 ``pydicom.sr.codedict.codes.SCT``, i.e. the DICOM
PS3.16 concept dictionary):

- verified in pydicom's dictionary: mel 1162635006 "Malignant melanoma", akiec 201101007 "Actinic
  keratosis", vasc 400210000 "Hemangioma" (the closest vascular-lesion concept it has).
- not in pydicom's dictionary, confirmed in public SNOMED CT reference pages (a FHIR terminology
  server's SNOMED CT browser: 400096001 "Melanocytic nevus (disorder)"; NCBI MedGen and MONDO:
  254701007 "Basal cell carcinoma of skin"): nv 400096001, bcc 254701007.
- NOT verified anywhere here: bkl 201100008 "Seborrheic keratosis" (HAM10000 "bkl" also holds solar
  lentigo and lichen-planus-like keratosis) and df 402802007 "Dermatofibroma". Check these in a
  SNOMED CT browser before clinical deployment.

``malignant`` follows the HAM10000 convention: mel, bcc and akiec form the malignant group
(akiec is precancerous / intraepithelial carcinoma).
"""

from __future__ import annotations

from inference.models.prediction import ClassLabel, CodedConcept

SCT = "SCT"

#: Network output order of every dermnode classifier bundle (alphabetical HAM10000 codes).
HAM10000_CLASSES: tuple[ClassLabel, ...] = (
    ClassLabel(
        "akiec",
        "Actinic keratosis / intraepithelial carcinoma",
        CodedConcept("201101007", SCT, "Actinic keratosis"),
        malignant=True,
    ),
    ClassLabel(
        "bcc",
        "Basal cell carcinoma",
        CodedConcept("254701007", SCT, "Basal cell carcinoma of skin"),
        malignant=True,
    ),
    ClassLabel(
        "bkl",
        "Benign keratosis-like lesion",
        CodedConcept("201100008", SCT, "Seborrheic keratosis"),
        malignant=False,
    ),
    ClassLabel("df", "Dermatofibroma", CodedConcept("402802007", SCT, "Dermatofibroma"), malignant=False),
    ClassLabel("mel", "Melanoma", CodedConcept("1162635006", SCT, "Malignant melanoma"), malignant=True),
    ClassLabel(
        "nv", "Melanocytic nevus", CodedConcept("400096001", SCT, "Melanocytic nevus"), malignant=False
    ),
    ClassLabel("vasc", "Vascular lesion", CodedConcept("400210000", SCT, "Hemangioma"), malignant=False),
)

#: Codes found in pydicom's SNOMED CT dictionary (see the module docstring).
VERIFIED_IN_PYDICOM: frozenset[str] = frozenset({"1162635006", "201101007", "400210000", "95324001"})

#: Codes not in pydicom's dictionary but confirmed in public SNOMED CT reference pages (docstring).
VERIFIED_ELSEWHERE: frozenset[str] = frozenset({"400096001", "254701007"})

#: The single label of a segmentation bundle (SCT 95324001 "Skin lesion", verified in pydicom).
LESION = ClassLabel("lesion", "Skin lesion", CodedConcept("95324001", SCT, "Skin lesion"), malignant=False)

MELANOMA_KEY = "mel"


def class_keys() -> tuple[str, ...]:
    """The diagnosis keys in network output order."""
    return tuple(label.key for label in HAM10000_CLASSES)
