"""CPU buffers kept between calls: per-thread scratch tensors, and recycled memory for large results.

A fresh allocation of hundreds of MB is handed out by the allocator as new pages, and touching each 4 KiB page
for the first time (a page fault) costs a large share of a pass that only reads or writes it once: on the
surface metrics' dense path, allocating and first filling the EDT's float64 workspace and its result took about
a quarter of the transform.  :func:`scratch` keeps one tensor per ``key`` and thread and hands it out again
(grown when a larger one is asked for), so that repeated calls of one size touch no new page.

The memory stays held by the thread until :func:`release` (or the thread's end): at most the largest request per
key.  Contents are undefined: callers overwrite what they use.  Only for buffers that never leave the library.

:func:`recycled_empty` is for a large result that does leave the library, such as the logits' gradient, which
autograd hands to the network's backward and then frees.  glibc's ``malloc`` reuses freed blocks of up to 32 MiB
(its largest ``mmap`` threshold), but maps every larger one afresh and unmaps it when it is freed, so each
training step faults on every page of such a gradient again: at 2x4x144^3 (a 91 MiB gradient, even on huge
pages) that took the gradient pass from 2.0 to 4.8 ns per voxel.  Above that size the result's memory comes from
a small process-wide pool of blocks.  A block is handed out again only once every tensor over it is gone: the
tensor is made with :func:`torch.frombuffer`, whose storage holds a reference to the block until the storage
itself is freed, views included.  ``FASTGSL_RECYCLE=0`` turns this off; :func:`release` frees the unused blocks.
"""
from __future__ import annotations

import math
import os
import sys
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


#: results smaller than this come from ``torch.empty``: glibc's malloc already reuses blocks up to 32 MiB
RECYCLE_MIN_BYTES = 32 << 20
_POOL_BLOCKS = 8  # at most this many blocks held (deep supervision frees several gradients per step)
_ALIGN = 64  # a cache line: the gradient pass streams whole aligned vectors
_pool: list[bytearray] = []
_pool_lock = threading.Lock()


def _unused(i: int) -> bool:
    # the pool's list and getrefcount's argument are the only references: no tensor's storage holds block i
    return sys.getrefcount(_pool[i]) == 2


def recycled_empty(shape, dtype: torch.dtype, device="cpu") -> torch.Tensor:
    """An uninitialised contiguous tensor of ``shape`` and ``dtype`` on ``device``; on the CPU and above
    :data:`RECYCLE_MIN_BYTES`, over memory recycled from an earlier result that is no longer referenced (see the
    module's docstring; other devices have their own caching allocator).  Such a tensor's storage cannot grow:
    ``resize_`` to more elements raises, as for any ``torch.frombuffer`` tensor."""
    numel = math.prod(shape)
    nbytes = numel * dtype.itemsize
    if (torch.device(device).type != "cpu" or nbytes < RECYCLE_MIN_BYTES
            or os.environ.get("FASTGSL_RECYCLE", "1") == "0"):
        return torch.empty(shape, dtype=dtype, device=device)
    need = nbytes + _ALIGN
    with _pool_lock:
        unused = [i for i in range(len(_pool)) if _unused(i)]
        fits = [i for i in unused if need <= len(_pool[i]) <= 2 * need]
        if fits:
            block = _pool[min(fits, key=lambda i: len(_pool[i]))]
        else:
            while unused and len(_pool) >= _POOL_BLOCKS:  # make room by dropping blocks nobody holds
                del _pool[unused.pop()]
            if len(_pool) >= _POOL_BLOCKS:  # every block is in use: an ordinary allocation
                return torch.empty(shape, dtype=dtype)
            block = bytearray(need)
            _pool.append(block)
        base = torch.frombuffer(block, dtype=torch.uint8, count=1).data_ptr()
        offset = -base % _ALIGN
        return torch.frombuffer(block, dtype=dtype, count=numel, offset=offset).view(shape)


def release() -> None:
    """Free this thread's scratch tensors, and the recycled blocks that no tensor uses."""
    _local.held = {}
    with _pool_lock:
        _pool[:] = [_pool[i] for i in range(len(_pool)) if not _unused(i)]


__all__ = ["scratch", "recycled_empty", "release", "RECYCLE_MIN_BYTES"]
