from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from dermnode.kernel.errors import SpoolError
from dicom_node.spool import Spool


def test_adopt_renames_into_the_study_folder(tmp_path: Path) -> None:
    received = tmp_path / "received.dcm"
    received.write_bytes(b"DICM data")
    path = Spool(tmp_path / "spool").adopt(received, "1.2.3", "1.2.3.4")
    assert path == tmp_path / "spool" / "1.2.3" / "1.2.3.4.dcm"
    assert path.read_bytes() == b"DICM data" and not received.exists()


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second filesystem (/dev/shm)")
def test_adopt_copies_across_filesystems(tmp_path: Path) -> None:
    fd, name = tempfile.mkstemp(dir="/dev/shm")
    os.write(fd, b"from another filesystem")
    os.close(fd)
    if os.stat(name).st_dev == os.stat(tmp_path).st_dev:
        os.unlink(name)
        pytest.skip("/dev/shm is on the same filesystem here")
    path = Spool(tmp_path / "spool").adopt(Path(name), "1.2.3", "1.2.3.4")
    assert path.read_bytes() == b"from another filesystem"
    assert not Path(name).exists()
    assert list(path.parent.glob(".incoming-*")) == []


def _received(tmp_path: Path, data: bytes = b"x") -> Path:
    """A file as pynetdicom leaves a received data set, before the handler adopts it."""
    path = Path(tempfile.mkstemp(dir=tmp_path, suffix=".dcm")[1])
    path.write_bytes(data)
    return path


def test_bad_uid_and_unwritable_spool_are_clear_errors(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    with pytest.raises(SpoolError, match=r"Study Instance UID '\.\./x' is not a valid UID"):
        spool.adopt(_received(tmp_path), "../x", "1.2")
    (spool.root / "1.2.3").write_text("a file where the study folder should be")
    with pytest.raises(SpoolError, match=r"could not store instance 1\.2\.3\.4 .*check free space and permissions"):
        spool.adopt(_received(tmp_path), "1.2.3", "1.2.3.4")


def test_clean_incomplete_removes_interrupted_writes_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    kept = spool.adopt(_received(tmp_path), "1.2.3", "1.2.3.4")
    (kept.parent / ".incoming-abc.dcm").write_bytes(b"half")
    assert spool.clean_incomplete() == 1
    assert [p.name for p in kept.parent.iterdir()] == [kept.name]
