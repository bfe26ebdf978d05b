"""Private files and folders: the spool, ledger and outbox hold patient data (PS3.15 E: confidentiality).

Folders are created 0700 and files 0600, whatever the process umask; an existing folder or file made
by an older version is tightened on start.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Make ``path`` a 0700 folder, creating missing parents 0700 too (existing parents are left alone)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another thread or process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    if not missing and stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it to 0600 if it does.

    An existing file is never opened: closing any descriptor of a file drops every POSIX lock this
    process holds on it, and SQLite's locks on an open ledger are such locks. Losing them let another
    process take the ledger for unused, rebuild its WAL index and leave this process reading a stale
    snapshot (a second Ledger in the node process did exactly that).
    """
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another thread or process made it meanwhile
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
    os.chmod(path, PRIVATE_FILE_MODE)
    return path


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (POSIX: fsync the folder itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(target: Path, write: Callable[[BinaryIO], object], prefix: str = ".writing-") -> None:
    """Write ``target`` so that a crash leaves the old file or the new one, never half of one: a temporary
    file (0600, named ``prefix``…) beside it in a 0700 folder, written with ``write``, fsynced, renamed over
    ``target``, then the folder fsynced. A failed write removes its temporary file."""
    private_dir(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
