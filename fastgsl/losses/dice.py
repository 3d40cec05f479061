"""Dice loss (paper eq. 3, MONAI ``DiceLoss``) and Dice + cross-entropy (eq. 4, MONAI ``DiceCELoss``)."""
from __future__ import annotations


from fastgsl.losses._base import StatsLoss, check_reduction, reduce
from fastgsl.losses.cross_entropy import cross_entropy_from_stats
from fastgsl.ops import voxel_stats as vs


def dice_from_stats(stats, *, first: int, squared_pred: bool, batch: bool, smooth_nr: float, smooth_dr: float):
    """Per-(batch, class) Dice loss ``1 - (2 sum PT + smooth_nr) / (sum T^q + sum P^q + smooth_dr)``.

    ``q = 2`` with ``squared_pred`` (eq. 3 as written), else 1.  ``batch`` sums over the batch first and
    returns ``(C,)``; otherwise ``(B, C)``.
    """
    s = stats[:, first:]
    inter = s[..., vs.I]
    den = s[..., vs.ST2] + s[..., vs.SP2] if squared_pred else s[..., vs.ST] + s[..., vs.SP]
    if batch:
        inter, den = inter.sum(0), den.sum(0)
    return 1.0 - (2.0 * inter + smooth_nr) / (den + smooth_dr)


def dice_needs(squared_pred: bool) -> frozenset:
    return frozenset({vs.I, vs.ST2, vs.SP2} if squared_pred else {vs.I, vs.ST, vs.SP})


class DiceLoss(StatsLoss):
    """Soft Dice loss, equal to MONAI ``DiceLoss(softmax=True, to_onehot_y=True, ...)`` for the same options.

    ``f_bc = 1 - (2 sum_i P T + smooth_nr) / (sum_i T^q + sum_i P^q + smooth_dr)``, ``q = 2`` if
    ``squared_pred`` (the paper's eq. 3, our default) else 1; then ``reduction`` over (batch, class).
    With ``batch=True`` the sums also run over the batch, giving one value per class.
    ``reduction="none"`` returns ``(B, C')`` (``(C',)`` with ``batch``), where ``C'`` counts included channels.
    """

    def __init__(self, squared_pred: bool = True, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.squared_pred = bool(squared_pred)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.needs = dice_needs(self.squared_pred)

    def from_stats(self, stats, n_voxels):
        f = dice_from_stats(stats, first=self.first_channel(stats.shape[1]), squared_pred=self.squared_pred,
                            batch=self.batch, smooth_nr=self.smooth_nr, smooth_dr=self.smooth_dr)
        return reduce(f, self.reduction)


class DiceCELoss(StatsLoss):
    """``lambda_dice * Dice + lambda_ce * CE``, equal to MONAI ``DiceCELoss`` for the same options.

    The Dice term is :class:`DiceLoss` (``include_background`` applies to it only); the CE term always covers
    every channel, as in MONAI, and is averaged over voxels (``reduction="sum"`` sums both terms instead).
    Paper eq. 4 divides CE by C as well; that constant scale is ``lambda_ce``'s job.  With ``"sigmoid"`` the CE
    term is binary cross-entropy per channel; MONAI uses it only for one channel and softmax CE otherwise,
    which is wrong for overlapping regions.  ``reduction="none"`` is not supported (as in MONAI).
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0, squared_pred: bool = True,
                 smooth_nr: float = 1e-5, smooth_dr: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        check_reduction(self.reduction, ("mean", "sum"))
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0, got {lambda_dice}, {lambda_ce}")
        self.require_logits()
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        self.squared_pred = bool(squared_pred)
        self.smooth_nr, self.smooth_dr = float(smooth_nr), float(smooth_dr)
        self.needs = dice_needs(self.squared_pred) | {vs.CE}

    def from_stats(self, stats, n_voxels):
        dice = dice_from_stats(stats, first=self.first_channel(stats.shape[1]), squared_pred=self.squared_pred,
                               batch=self.batch, smooth_nr=self.smooth_nr, smooth_dr=self.smooth_dr)
        ce = cross_entropy_from_stats(stats, n_voxels, self.activation)
        if self.reduction == "sum":
            n_terms = stats.shape[0] * n_voxels * (stats.shape[1] if self.activation == "sigmoid" else 1)
            return self.lambda_dice * dice.sum() + self.lambda_ce * ce * n_terms
        return self.lambda_dice * dice.mean() + self.lambda_ce * ce
