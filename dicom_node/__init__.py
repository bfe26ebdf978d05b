"""dermnode DICOM node: receives dermoscopy studies, spools them durably, queues complete studies."""

__version__ = "0.1.0"
