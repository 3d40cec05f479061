"""Generalized Surface Loss (Celaya et al.; paper eq. 12)."""
from __future__ import annotations


from fastgsl.losses._base import StatsLoss, reduce
from fastgsl.validation import check_choice
from fastgsl.ops import voxel_stats as vs

CLASS_REDUCTIONS = ("weighted", "mean")


class GeneralizedSurfaceLoss(StatsLoss):
    """Generalized Surface Loss, bounded in [0, 1]: 0 at ``P = T`` and 1 at the worst case ``P = 1 - T``.

    ``class_reduction="weighted"`` (eq. 12, the paper's code), one value per sample ``b``::

        L_b = 1 - sum_k w_k sum_i (D_bik (1 - T_bik - P_bik))^2 / (sum_k w_k sum_i D_bik^2 + smooth)

    ``class_reduction="mean"``, one value per (sample, class), then the mean; with
    ``include_background=False`` this is MIST 2.3.0's surface term::

        L_bk = 1 - sum_i (D_bik (1 - T_bik - P_bik))^2 / (sum_i D_bik^2 + smooth)

    Args:
        class_weights: ``C`` weights ``w_k`` (all classes, background included; eq. 13 / 17 from
            ``fastgsl.weights.class_weights``).  ``None`` means uniform.  Channel 0's weight is dropped with
            ``include_background=False``.  Only used by ``"weighted"``.
        include_background: keep channel 0 (default True, as in the paper's code).
        class_reduction: ``"weighted"`` or ``"mean"`` (above).
        smooth: added to each denominator (MIST's 1e-6); keeps an all-zero DTM from producing 0/0.
        batch: sum over the batch before the ratio.

    ``D`` is the ground-truth DTM (``dtm=`` or computed from the target).  ``reduction`` runs over samples
    (``"weighted"``) or (sample, class) entries (``"mean"``); ``"none"`` returns ``(B,)`` or ``(B, C')``.
    """

    def __init__(self, class_weights=None, include_background: bool = True, class_reduction: str = "weighted",
                 smooth: float = 1e-6, **kwargs):
        super().__init__(include_background=include_background, **kwargs)
        check_choice("class_reduction", class_reduction, CLASS_REDUCTIONS)
        self.set_class_weights(class_weights)
        self.class_reduction = class_reduction
        self.smooth = float(smooth)
        self.needs = frozenset({vs.SURF, vs.D2})

    def from_stats(self, stats, n_voxels):
        first = self.first_channel(stats.shape[1])
        num, den = stats[:, first:, vs.SURF], stats[:, first:, vs.D2]
        if self.batch:
            num, den = num.sum(0, keepdim=True), den.sum(0, keepdim=True)
        if self.class_reduction == "mean":
            return reduce(1.0 - num / (den + self.smooth), self.reduction)
        if self.class_weights is not None:
            w = self.weights_for(stats, first)
            num, den = num * w, den * w
        return reduce(1.0 - num.sum(1) / (den.sum(1) + self.smooth), self.reduction)
