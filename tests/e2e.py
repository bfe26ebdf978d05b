"""Shared pieces of the end-to-end tests: a storescp destination, a node's arguments, output checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import highdicom as hd
from pydicom import dcmread

from tests import dcmtk
from tests.dciodvfy import dciodvfy_problems

SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def serve_args(data_dir: Path, dest: dcmtk.StoreSCP, *extra: str) -> list[str]:
    return [
        "serve", "--port", "0", "--bind", "127.0.0.1", "--data-dir", str(data_dir),
        "--allow", "STORESCU", "--destination", f"{dest.ae_title}@127.0.0.1:{dest.port}",
        "--quiet-period", "1", *extra,
    ]


def broker_args(url: str) -> list[str]:
    """A node that queues to a broker: its worker API on an ephemeral loopback port."""
    return ["--broker", url, "--worker-api-port", "0", "--worker-api-bind", "127.0.0.1"]


def check_outputs(files: list[Path], n_images: int, study_uid: str) -> None:
    datasets = [dcmread(f) for f in files]
    segs = [d for d in datasets if d.SOPClassUID == SEG]
    srs = [d for d in datasets if d.Modality == "SR"]
    lesion_segs = [d for d in segs if d.ContentLabel == "LESION"]
    assert len([d for d in segs if d.ContentLabel == "ATTENTION_LEVELS"]) == n_images
    assert len(lesion_segs) == n_images, [d.SeriesDescription for d in datasets]
    assert len(srs) == 1
    for f, d in zip(files, datasets, strict=True):
        assert d.StudyInstanceUID == study_uid
        assert "not for diagnostic use" in d.SeriesDescription.lower()
        assert dciodvfy_problems(f) == [], f"{d.SeriesDescription}: {dciodvfy_problems(f)}"
        if d.SOPClassUID == SEG:
            seg = hd.seg.segread(f)
            assert seg.number_of_segments >= 1
        else:
            sr = hd.sr.srread(f)
            assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"


def studies_listing(data_dir: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "dermnode.cli", "studies", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout


#: Objects per image: lesion SEG, attention SEG (FRACTIONAL), attention-levels SEG (BINARY).
PER_IMAGE_OBJECTS = 3


def expected_objects(n_images: int) -> int:
    return PER_IMAGE_OBJECTS * n_images + 1  # plus one SR
