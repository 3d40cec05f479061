"""The one import of fastgsl's fused voxel-statistics op in this layer (the op's layout: fastgsl.ops.voxel_stats).

``stats(x, target, act, needs, dtm=None, dtm_pred=None)`` returns the differentiable ``(B, C, K)`` sums over voxels
of the activated prediction ``P = act(x)`` and the target ``T`` (integer labels ``(B, *spatial)`` or a float
``(B, C, *spatial)`` tensor); indices ``I = sum PT``, ``SP = sum P``, ``SP2 = sum P^2``, ``ST = sum T``,
``ST2 = sum T^2``, ``CE`` (softmax: ``-sum T log P``; sigmoid: binary cross-entropy with logits) and
``HAUS = sum (T - P)^2 (D^2 + Dp^2)``.  The gradient pass recomputes ``P`` from ``x``: nothing of the input's size
is kept for backward.  ``labels`` (a ``fastgsl.validation.LabelRange``): the range a label map must lie in, which
the pass checks as it reads it.
"""
from __future__ import annotations

from fastgsl.ops.voxel_stats import CE, HAUS, I, SP, SP2, ST, ST2, StatSpec, voxel_stats


def stats(x, target, act: str, needs, dtm=None, dtm_pred=None, labels=None):
    return voxel_stats(x, target, dtm, dtm_pred, spec=StatSpec(act, frozenset(needs)), labels=labels)


__all__ = ["stats", "I", "SP", "SP2", "ST", "ST2", "CE", "HAUS"]
