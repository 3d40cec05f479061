"""Hausdorff distance loss (Karimi & Salcudean 2019; paper eq. 7)."""
from __future__ import annotations

import torch

from fastgsl.losses._base import Inputs, StatsLoss, reduce
from fastgsl import dtm as _dtm
from fastgsl.ops import voxel_stats as vs


class HausdorffLoss(StatsLoss):
    """``L = (1 / (C N)) sum_k sum_i (T_ik - P_ik)^2 (D_ik^2 + Dp_ik^2)``.

    One-sided by default (``Dp = 0``): only the ground-truth DTM ``D``, as in MIST's ``HDOneSidedLoss``
    (which is ``include_background=False``).  ``two_sided=True`` adds ``Dp``, the DTM of the prediction
    thresholded at 0.5 (``P > 0.5`` per channel), recomputed on the fly every call with the same
    convention and spacing; it is treated as a constant for the gradient, as in Karimi et al.
    ``reduction="none"`` returns ``(B, C')`` (``(C',)`` with ``batch``).
    """

    def __init__(self, two_sided: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.two_sided = bool(two_sided)
        self.needs = frozenset({vs.HAUS})

    def prediction_dtm(self, x: Inputs):
        if not self.two_sided:
            return None
        with torch.no_grad():
            z = x.logits.float()
            if self.activation == "softmax":
                p = torch.softmax(z, 1)
            else:
                p = torch.sigmoid(z) if self.activation == "sigmoid" else z
            return _dtm.signed_distance(p > 0.5, self.spacing, spatial_dims=x.spatial_dims,
                                        convention=self.dtm_convention)

    def from_stats(self, stats, n_voxels):
        f = stats[:, self.first_channel(stats.shape[1]):, vs.HAUS] / n_voxels
        if self.batch:
            f = f.mean(0)
        return reduce(f, self.reduction)
