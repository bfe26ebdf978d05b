"""The DICOM outputs are built without the models: importing them loads neither torch nor MONAI."""

from __future__ import annotations

import subprocess
import sys


def test_outputs_import_no_torch_or_monai() -> None:
    code = (
        "import sys, inference.outputs.build, inference.outputs.readback; "
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_the_check_would_see_torch() -> None:
    code = "import sys, inference.models.predict; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "True"
