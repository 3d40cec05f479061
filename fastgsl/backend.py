"""Which implementation a computation runs on.

``FASTGSL_BACKEND`` (read at every call, so tests may set it) chooses:

* ``auto`` (default): the Triton kernels for CUDA tensors, the PyTorch host path otherwise;
* ``triton``: always the Triton kernels.  On CPU tensors they run under the Triton interpreter, which must be
  enabled with ``TRITON_INTERPRET=1`` *before* triton is first imported;
* ``torch``: always the PyTorch host path (any device).

``FASTGSL_ATOMICS=1`` lets the Triton statistics pass reduce with atomics (faster by one launch, not
bit-reproducible); by default the reduction is two-stage and fixed-order.
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
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def atomics_enabled() -> bool:
    """Whether the Triton statistics pass may reduce with atomics (``FASTGSL_ATOMICS=1``; default off).

    Atomics save the second reduction launch but add the per-program partial sums in a run-dependent order, so
    results are no longer bit-reproducible.  They stay off whenever ``torch.use_deterministic_algorithms(True)``
    is in force.
    """
    if os.environ.get("FASTGSL_ATOMICS", "0").strip() not in ("1", "true", "True", "yes"):
        return False
    return not torch.are_deterministic_algorithms_enabled()
