"""A study as the C-STORE handler leaves it: spooled files, ledger rows, state "queued"."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from dermnode.kernel.settings import Settings
from dicom_node.ledger import Ledger, ReceivedInstance, StudyState
from dicom_node.spool import Spool
from tests.factories import write_study


def spool_study(source_dir: Path, settings: Settings, ledger: Ledger, n: int = 2) -> str:
    """Write ``n`` synthetic images of one study into ``source_dir``, spool and record them; the study UID."""
    spool = Spool(settings.spool_dir)
    for path in write_study(source_dir, n_images=n):
        ds = dcmread(path)
        final = spool.adopt(path, ds.StudyInstanceUID, ds.SOPInstanceUID)
        ledger.record_instance(ReceivedInstance(ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                ds.SOPClassUID, str(ds.file_meta.TransferSyntaxUID), final,
                                                "STORESCU", "127.0.0.1"))
    study_uid = str(ds.StudyInstanceUID)
    ledger.transition(study_uid, StudyState.QUEUED)
    return study_uid
