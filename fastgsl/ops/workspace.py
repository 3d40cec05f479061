"""Per-thread CPU scratch tensors kept between calls.

A fresh allocation of hundreds of MB is handed out by the allocator as new pages, and touching each 4 KiB page
for the first time (a page fault) costs a large share of a pass that only reads or writes it once: on the
surface metrics' dense path, allocating and first filling the EDT's float64 workspace and its result took about
a quarter of the transform.  :func:`scratch` keeps one tensor per ``key`` and thread and hands it out again
(grown when a larger one is asked for), so that repeated calls of one size touch no new page.

The memory stays held by the thread until :func:`release` (or the thread's end): at most the largest request per
key.  Contents are undefined: callers overwrite what they use.  Only for buffers that never leave the library.
"""
from __future__ import annotations

import threading

import torch

_local = threading.local()


def scratch(key: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous 1-D CPU tensor of ``numel`` elements of ``dtype``, this thread's buffer for ``key``."""
    held = getattr(_local, "held", None)
    if held is None:
        held = _local.held = {}
    buf = held.get(key)
    if buf is None or buf.dtype != dtype or buf.numel() < numel:
        held.pop(key, None)  # drop the old buffer before the new one is allocated
        buf = held[key] = torch.empty(numel, dtype=dtype)
    return buf[:numel]


def release() -> None:
    """Free this thread's scratch tensors."""
    _local.held = {}


__all__ = ["scratch", "release"]
