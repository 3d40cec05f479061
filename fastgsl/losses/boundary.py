"""Boundary loss (Kervadec et al. 2019; paper eq. 9)."""
from __future__ import annotations

from fastgsl.losses._base import StatsLoss, reduce
from fastgsl.ops import voxel_stats as vs


class BoundaryLoss(StatsLoss):
    """``L = (1 / (C N)) sum_k sum_i D_ik P_ik``, the mean of ``D * P`` over included classes and voxels.

    ``D`` is the ground-truth DTM (negative inside, so the loss is minimised by predicting the object).  The
    paper's code keeps every class (``include_background=True``, our default); MIST's boundary term is
    ``include_background=False``.  The Kervadec repository's own DTM is ``dtm_convention="kervadec"``.
    ``reduction="none"`` returns the per-(batch, class) means ``(B, C')`` (``(C',)`` with ``batch``).
    The loss is unbounded: its scale is that of the DTM.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.needs = frozenset({vs.DP})

    def from_stats(self, stats, n_voxels):
        f = stats[:, self.first_channel(stats.shape[1]):, vs.DP] / n_voxels
        if self.batch:
            f = f.mean(0)
        return reduce(f, self.reduction)
