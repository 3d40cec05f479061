"""nnU-Net v2 integration (fastgsl.nnunet).

nnunetv2 2.8.1 cannot search its trainers on the CPU build of torch this environment carries (its search imports
timm, which imports torchvision, which needs the CUDA build), so the checks run in a second environment that
``.ci/nnunet-venv`` builds: torch 2.14.1 (CUDA build, runs on a CPU-only machine), torchvision 0.29.1,
nnunetv2 2.8.1, MONAI and SimpleITK, with this checkout installed editable.  ``.ci/run`` builds it and exports
its python as ``FASTGSL_NNUNET_PYTHON``; each test below runs one file of ``tests/nnunet_venv/`` there with
pytest and fails with that run's output.  Without the variable the checks skip, saying so.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHECKS = HERE / "nnunet_venv"
PYTHON = os.environ.get("FASTGSL_NNUNET_PYTHON")


def test_import_fastgsl_does_not_import_fastgsl_nnunet():
    code = ("import sys, fastgsl, fastgsl.losses, fastgsl.metrics; "
            "print(sorted(m for m in sys.modules if m.startswith(('fastgsl.nnunet', 'nnunetv2'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("check", ["check_losses.py", "check_discovery.py", "check_evaluate.py",
                                   "check_end_to_end.py"])
def test_in_nnunet_environment(check):
    if not PYTHON:
        pytest.skip("FASTGSL_NNUNET_PYTHON is not set: build the nnU-Net environment with .ci/nnunet-venv and "
                    "export its python (.ci/run does both)")
    if not Path(PYTHON).is_file():
        pytest.fail(f"FASTGSL_NNUNET_PYTHON={PYTHON} does not exist")
    r = subprocess.run([PYTHON, "-m", "pytest", str(CHECKS / check), "-q", "-p", "no:cacheprovider"],
                       capture_output=True, text=True, cwd=HERE.parent, timeout=900)
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, f"{check} failed in {PYTHON}:\n{tail}"
    assert " passed" in r.stdout and " skipped" not in r.stdout, tail
