"""Cross-entropy, from the ``CE`` voxel statistic."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgsl.losses._base import StatsLoss, check_inputs
from fastgsl.ops import voxel_stats as vs


def cross_entropy_from_stats(stats: torch.Tensor, n_voxels: int, activation: str, first: int = 0) -> torch.Tensor:
    """Mean cross-entropy over voxels (softmax: ``B N`` terms; sigmoid BCE: ``B C N`` terms).

    Softmax: ``-(1 / (B N)) sum_{b,c,i} T log P``, equal to ``F.cross_entropy`` with class-index or
    probability targets.  Sigmoid: the mean of ``F.binary_cross_entropy_with_logits``.
    """
    ce = stats[:, first:, vs.CE]
    denom = stats.shape[0] * n_voxels * (ce.shape[1] if activation == "sigmoid" else 1)
    return ce.sum() / denom


class CrossEntropyLoss(StatsLoss):
    """Cross-entropy on logits, equal to ``torch.nn.functional.cross_entropy`` (softmax) or
    ``binary_cross_entropy_with_logits`` (sigmoid, one output per channel).

    ``L = -(1 / (B N)) sum_b sum_i sum_c T_bci log softmax(z)_bci``.

    ``reduction="mean"`` averages over voxels (and channels for sigmoid); ``"sum"`` sums;
    ``"none"`` returns the per-voxel loss, ``(B, *spatial)`` for softmax or ``(B, C, *spatial)`` for sigmoid,
    computed directly (that output is itself the size of the input).  ``include_background=False`` drops the
    channel-0 terms (background voxels then contribute nothing) but keeps the normaliser.  ``batch`` has no
    effect on a mean over voxels.  ``activation="none"`` is rejected: cross-entropy needs logits.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.require_logits()
        self.needs = frozenset({vs.CE})

    def from_stats(self, stats, n_voxels):
        first = self.first_channel(stats.shape[1])
        ce = cross_entropy_from_stats(stats, n_voxels, self.activation, first)
        if self.reduction == "sum":
            n_terms = stats.shape[0] * n_voxels * (stats.shape[1] - first if self.activation == "sigmoid" else 1)
            return ce * n_terms
        return ce

    def forward(self, logits, target, dtm=None):
        if self.reduction != "none":
            return super().forward(logits, target, dtm)
        x = check_inputs(logits, target, self.activation)
        if x.labels is not None:
            x.labels.check(x.target)  # no statistics pass here to find the labels' range
        C = logits.shape[1]
        first = self.first_channel(C)
        if x.is_labels and x.label_offset:
            t = (x.target == x.label_offset).unsqueeze(1).to(logits.dtype)
        elif x.is_labels:
            t = F.one_hot(x.target.long(), C).movedim(-1, 1).to(logits.dtype)
        else:
            t = x.target.to(logits.dtype)
        if self.activation == "sigmoid":
            return F.binary_cross_entropy_with_logits(logits, t, reduction="none")[:, first:]
        return -(t * torch.log_softmax(logits, 1))[:, first:].sum(1)
