"""Which engine ran: an opt-in record of the implementation each fastgsl operation chose.

fastgsl picks an implementation per call (the C++ host library or the PyTorch passes, CuPy or the host EDT, the
k-d tree or the dense EDT for the metrics).  Tests and benchmarks need to know which one answered; nothing else
does, so the hot paths only report to a recorder that the caller opened, and do nothing otherwise::

    from fastgsl import observe

    with observe.engines() as seen:
        loss(logits, labels).backward()
    seen.last("voxel_stats")   # "native": the C++ statistics and gradient passes ran
    seen.all("edt")            # every EDT engine used inside the block, in call order

The record lives in a :class:`contextvars.ContextVar`, so each thread (and each asyncio task) sees only its own
block; nested blocks each get every event.  Under ``torch.compile`` tracing nothing is recorded (the choice is
made once, at trace time, and a side effect there would break the graph).

Operations and their engines:

======================  =============================================================================
``voxel_stats``         ``"native"`` (C++ host passes), ``"torch"`` (chunked PyTorch passes), ``"triton"``
``edt``                 ``"cupy"``, ``"host"`` (the C++ build of ``kernels/edt_kernel.cu``), ``"scipy"``
``metric_distances``    ``"sparse"`` (k-d tree of ``fastgsl.ops.nearest``), ``"dense"`` (EDT)
``metric_quantile``     ``"limited"`` (a percentile HD on the k-d tree measured exactly only above a sampled
                        limit), ``"exact"`` (every distance exact: no limit applied, or the limit was misjudged)
``label_check``         ``"fused"`` (each label tested by the C++ statistics pass as it reads it),
                        ``"aminmax"`` (a reduction of its own: the PyTorch passes, or a device-side assert on a GPU)
``monai``               ``"fastgsl"`` (a ``fastgsl.monai`` class computed by fastgsl), ``"monai"``
                        (MONAI's own code, for an argument fastgsl does not reproduce)
======================  =============================================================================
"""
from __future__ import annotations

import contextlib
import contextvars

import torch

_open: contextvars.ContextVar[tuple] = contextvars.ContextVar("fastgsl_observe", default=())


class EngineRecord:
    """The ``(operation, engine)`` events of one :func:`engines` block, in call order."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def all(self, op: str) -> list[str]:
        return [e for o, e in self.events if o == op]

    def last(self, op: str) -> str | None:
        """The engine of the latest ``op`` call in the block, or None if there was none."""
        found = self.all(op)
        return found[-1] if found else None

    def __repr__(self) -> str:
        return f"EngineRecord({self.events!r})"


@contextlib.contextmanager
def engines():
    """Record, for the duration of the block, which engine every fastgsl operation used."""
    rec = EngineRecord()
    token = _open.set(_open.get() + (rec,))
    try:
        yield rec
    finally:
        _open.reset(token)


def note(op: str, engine: str) -> None:
    """Report that ``op`` ran on ``engine`` to every open record (a no-op, and cheap, when none is open)."""
    if torch.compiler.is_compiling():
        return
    recs = _open.get()
    for r in recs:
        r.events.append((op, engine))


__all__ = ["engines", "note", "EngineRecord"]
