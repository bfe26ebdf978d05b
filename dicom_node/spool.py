"""The spool: received instances made durable on disk before C-STORE success is returned.

Layout: ``<spool>/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` (DICOM Part 10 files), folders 0700 and
files 0600 (:mod:`dermnode.kernel.files`). Every write is
temp file → fsync → rename → fsync of the directory, so a crash leaves either the old or the new
file, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from dermnode.kernel.errors import SpoolError
from dermnode.kernel.files import PRIVATE_FILE_MODE, fsync_dir, private_dir, write_durably
from dermnode.kernel.uids import is_valid_uid

#: Temporary files of writes in progress; a crash may leave one, removed at the next start.
INCOMING_PREFIX = ".incoming-"


@contextlib.contextmanager
def _spool_errors(target: Path, sop_instance_uid: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise SpoolError(
            f"could not store instance {sop_instance_uid} in {target.parent}: {e.strerror or e}; "
            "check free space and permissions of the data directory"
        ) from e


def _checked_uid(uid: str, what: str) -> str:
    if not is_valid_uid(uid):
        raise SpoolError(f"{what} {uid!r} is not a valid UID; refusing to use it as a file name")
    return uid


class Spool:
    """Durable storage of received instances, one folder per study."""

    def __init__(self, root: Path) -> None:
        self.root = private_dir(root)

    def path_for(self, study_uid: str, sop_instance_uid: str) -> Path:
        study = _checked_uid(study_uid, "Study Instance UID")
        sop = _checked_uid(sop_instance_uid, "SOP Instance UID")
        return self.root / study / f"{sop}.dcm"

    def adopt(self, received: Path, study_uid: str, sop_instance_uid: str) -> Path:
        """Move an already written Part 10 file into the spool durably; returns its final path.

        The rename is atomic when ``received`` is on the spool's filesystem; otherwise the bytes
        are copied to a temporary file beside the target first.
        """
        target = self.path_for(study_uid, sop_instance_uid)
        with _spool_errors(target, sop_instance_uid):
            private_dir(target.parent)
            try:
                with open(received, "rb") as f:
                    os.fchmod(f.fileno(), PRIVATE_FILE_MODE)
                    os.fsync(f.fileno())
                os.replace(received, target)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                with open(received, "rb") as src:
                    write_durably(target, lambda out: shutil.copyfileobj(src, out, 1 << 20), prefix=INCOMING_PREFIX)
                with contextlib.suppress(OSError):  # pynetdicom removes its temporary file itself as well
                    os.unlink(received)
            fsync_dir(target.parent)
        return target

    def remove_unrecorded(self, recorded: set[Path]) -> int:
        """Remove spooled files the ledger does not know (a crash between the rename into the spool and
        the ledger commit: never acknowledged, so the sender still has them); returns how many."""
        removed = 0
        for path in self.root.glob("*/*.dcm"):
            if path not in recorded:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def clean_incomplete(self) -> int:
        """Remove temporary files left by a crash mid-write (never acknowledged); returns how many."""
        removed = 0
        for tmp in self.root.glob(f"*/{INCOMING_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed
