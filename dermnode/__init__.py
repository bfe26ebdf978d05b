"""dermnode: a DICOM node that brings dermoscopy AI into the PACS workflow.

This package holds the shared kernel (:mod:`dermnode.kernel`: errors, settings, queue messages, retry
policy, UIDs), which every layer may import, and the command line (:mod:`dermnode.cli`), the one
composition root that wires the layers together::

    dermnode.cli  →  workers  →  dicom_node | inference  →  dermnode.kernel
"""

__version__ = "0.1.0"
