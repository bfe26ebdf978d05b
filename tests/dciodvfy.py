"""Run dicom3tools' ``dciodvfy`` on a file and return its findings minus the documented false positives.

DESIGN.md: the 2022 Debian build knows the Dermoscopic Photography IOD but wrongly demands a Frame of
Reference for it and does not know the Modality defined term DMS. It also warns about every coding
scheme designator outside PS3.16 Table 8-1, although PS3.16 8.1 allows private designators starting
with "99" when the object declares them in its Coding Scheme Identification Sequence: that warning is
dropped only for such declared private schemes. Everything else it reports (errors and warnings) is a
defect of the object under test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

KNOWN_FALSE_POSITIVES = (
    re.compile(r"^Warning - Unrecognized defined term <DMS> for value 1 of attribute <Modality>$"),
    re.compile(r"^Error - Missing attribute Type 1 Required Element=<FrameOfReferenceUID> Module=<FrameOfReference>$"),
    re.compile(
        r"^Error - Missing attribute Type 2 Required Element=<PositionReferenceIndicator> "
        r"Module=<FrameOfReference>$"
    ),
)


def dciodvfy_problems(path: Path | str) -> list[str]:
    """Return dciodvfy's error and warning lines for ``path``, without the known false positives.

    Skips the calling test when ``dciodvfy`` is not installed.
    """
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    done = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    problems = [line.strip() for line in lines if line.startswith(("Error", "Warning"))]
    declared = _declared_private_schemes(path)
    return [
        p
        for p in problems
        if not any(rx.match(p) for rx in KNOWN_FALSE_POSITIVES) and _scheme_warning(p) not in declared
    ]


_SCHEME_WARNING = re.compile(
    r"^Warning - Unrecognized defined term <(?P<scheme>[^>]+)> for value 1 of attribute <Coding Scheme Designator>$"
)


def _scheme_warning(problem: str) -> str | None:
    match = _SCHEME_WARNING.match(problem)
    return match.group("scheme") if match else None


def _declared_private_schemes(path: Path | str) -> set[str]:
    ds = dcmread(path, stop_before_pixels=True)
    return {
        str(item.CodingSchemeDesignator)
        for item in ds.get("CodingSchemeIdentificationSequence", [])
        if str(item.get("CodingSchemeDesignator", "")).startswith("99")
    }
