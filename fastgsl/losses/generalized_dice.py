"""Generalized Dice loss (Sudre et al. 2017; paper eqs. 5-6), equal to MONAI ``GeneralizedDiceLoss``."""
from __future__ import annotations

import torch

from fastgsl.losses._base import StatsLoss, reduce
from fastgsl.ops import voxel_stats as vs


class GeneralizedDiceLoss(StatsLoss):
    """``f = 1 - (2 sum_k w_k sum_i T P + smooth_nr) / (sum_k w_k sum_i (T^q + P^q) + smooth_dr)``.

    Args:
        class_weights: ``None`` (default) uses eq. 6 per sample, ``w_k = 1 / (sum_i T_ik)^2``, with MONAI's
            rule for an absent class: its infinite weight is replaced by the largest finite weight of the same
            sample (of the batch with ``batch=True``).  A tensor of ``C`` fixed weights (e.g. eq. 13 from
            ``fastgsl.weights.class_weights``) uses those instead; channel 0's weight is dropped with
            ``include_background=False``.
        squared_pred: ``q = 2`` squares the denominator as eq. 5 is written; the default ``q = 1`` is MONAI's.
        smooth_nr, smooth_dr: added to numerator and denominator (MONAI's defaults).

    One value per sample (one in all with ``batch=True``), then ``reduction``; ``"none"`` returns ``(B,)``.
    """

    def __init__(self, class_weights=None, squared_pred: bool = False, smooth_nr: float = 1e-5,
                 smooth_dr: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.squared_pred = bool(squared_pred)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.set_class_weights(class_weights)
        self.needs = frozenset({vs.I, vs.ST, vs.SP2, vs.ST2} if self.squared_pred else {vs.I, vs.ST, vs.SP})

    def from_stats(self, stats, n_voxels):
        first = self.first_channel(stats.shape[1])
        s = stats[:, first:]
        inter = s[..., vs.I]
        den = s[..., vs.ST2] + s[..., vs.SP2] if self.squared_pred else s[..., vs.ST] + s[..., vs.SP]
        if self.batch:
            inter, den = inter.sum(0, keepdim=True), den.sum(0, keepdim=True)
        if self.class_weights is None:
            ground = s[..., vs.ST].sum(0, keepdim=True) if self.batch else s[..., vs.ST]
            w = 1.0 / ground.square()
            inf = torch.isinf(w)
            w = torch.where(inf, 0.0, w)
            w = w + inf * w.amax(1, keepdim=True)
            w = w.detach()
        else:
            w = self.weights_for(stats, first)
        f = 1.0 - (2.0 * (w * inter).sum(1) + self.smooth_nr) / ((w * den).sum(1) + self.smooth_dr)
        return reduce(f, self.reduction)
