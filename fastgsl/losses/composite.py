"""Composite loss (paper eq. 8): ``alpha * region + (1 - alpha) * boundary``, ``alpha`` from a schedule."""
from __future__ import annotations

import torch
from torch import nn

from fastgsl.losses._base import StatsLoss, check_inputs, shared_stats
from fastgsl.schedules import ConstantSchedule


class CompositeLoss(nn.Module):
    """``L = alpha * region(logits, target) + (1 - alpha) * boundary(logits, target, dtm)``.

    Args:
        region: a region loss such as :class:`DiceCELoss` (the paper's choice).
        boundary: a boundary loss such as :class:`GeneralizedSurfaceLoss`, :class:`BoundaryLoss` or
            :class:`HausdorffLoss`.
        schedule: a callable ``epoch -> alpha`` from ``fastgsl.schedules``, or a number for a constant alpha.

    ``set_epoch(t)`` sets ``alpha = schedule(t)`` (it starts at ``schedule(0)``).  When both parts are
    fastgsl losses with the same activation, they share ONE statistics pass and ONE gradient pass, so the
    composite reads the logits, target and DTM once, like a single loss.  The DTM is computed once from the
    target when ``dtm=None`` (with the boundary loss's spacing and convention).
    """

    def __init__(self, region: nn.Module, boundary: nn.Module, schedule=0.5):
        super().__init__()
        self.region, self.boundary = region, boundary
        self.schedule = ConstantSchedule(schedule) if isinstance(schedule, (int, float)) else schedule
        if not callable(self.schedule):
            raise TypeError(f"schedule must be a callable epoch -> alpha or a number, got {type(schedule).__name__}")
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> float:
        alpha = float(self.schedule(epoch))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"schedule gave alpha={alpha} at epoch {epoch}; it must lie in [0, 1]")
        self.epoch, self.alpha = epoch, alpha
        return alpha

    @property
    def fused(self) -> bool:
        r, b = self.region, self.boundary
        return isinstance(r, StatsLoss) and isinstance(b, StatsLoss) and r.activation == b.activation

    def forward(self, logits: torch.Tensor, target: torch.Tensor, dtm: torch.Tensor | None = None) -> torch.Tensor:
        a = self.alpha
        if not self.fused:
            return a * self.region(logits, target, dtm) + (1.0 - a) * self.boundary(logits, target, dtm)
        x = check_inputs(logits, target, self.region.activation, dtm)
        spec = self.region.spec(x).merged(self.boundary.spec(x))
        # the boundary loss's DTM options come first: it is the part the DTM is for
        stats = shared_stats(x, spec, (self.boundary, self.region))
        n = x.num_voxels
        return a * self.region.from_stats(stats, n) + (1.0 - a) * self.boundary.from_stats(stats, n)
