"""dermnode analysis: MONAI bundles, preprocessing, prediction and the DICOM output objects (SR, SEG)."""
