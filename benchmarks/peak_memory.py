"""Peak memory of one call, measured in a fresh process so that peers cannot inherit each other's peaks.

CPU: the growth of the process's resident high-water mark (``VmHWM``) over the resident size right after the
inputs are built, i.e. the memory a call needs *on top of its inputs*.  CUDA: ``torch.cuda.max_memory_allocated``
over the allocated bytes after the inputs are built.
"""
from __future__ import annotations

import json
import subprocess
import sys


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(module: str, func: str, *args) -> int:
    """Bytes above the inputs used by ``module.func(*args)()`` (the factory builds inputs, returns the call)."""
    code = (
        "import json, importlib, sys; sys.path.insert(0, '.');"
        "from benchmarks.peak_memory import _child;"
        f"print(json.dumps(_child({module!r}, {func!r}, {list(args)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def cuda_peak_extra_bytes(call) -> int:
    """Peak CUDA memory allocated by ``call()`` above what was allocated before it (inputs, model)."""
    import torch

    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _child(module: str, func: str, args) -> int:
    import importlib


    call, device = getattr(importlib.import_module(module), func)(*args)
    if device == "cuda":
        return cuda_peak_extra_bytes(call)
    # the first call is the measurement: VmHWM only grows, so no warm-up may run before it
    base = _status("VmRSS")
    call()
    return _status("VmHWM") - base
