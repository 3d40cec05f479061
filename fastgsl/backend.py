"""Which implementation a computation runs on.

``FASTGSL_BACKEND`` (read at every call, so tests may set it) chooses:

* ``auto`` (default): the Triton kernels for CUDA tensors, the PyTorch host path otherwise;
* ``triton``: always the Triton kernels.  On CPU tensors they run under the Triton interpreter, which must be
  enabled with ``TRITON_INTERPRET=1`` *before* triton is first imported;
* ``torch``: always the PyTorch host path (any device).
"""
from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "triton", "torch")


def requested() -> str:
    name = os.environ.get("FASTGSL_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"FASTGSL_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


def resolve(device: torch.device) -> str:
    """``"triton"`` or ``"torch"`` for a tensor on ``device``."""
    name = requested()
    if name == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if name == "triton" and device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "FASTGSL_BACKEND=triton on CPU tensors needs the Triton interpreter: set TRITON_INTERPRET=1 "
            "before triton is imported")
    return name


def triton_available() -> bool:
    try:
        import fastgsl.kernels.voxel_stats  # noqa: F401
    except ImportError:
        return False
    return True
