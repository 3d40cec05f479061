"""MONAI ``DiceCELoss`` on fastgsl's fused statistics pass: the Dice and cross-entropy sums of one pass."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from monai.losses import dice as _monai_dice

from fastgsl.monai import _stats as st
from fastgsl.monai._fallback import answered
from fastgsl.monai.losses._inputs import prepare
from fastgsl.monai.losses.dice import DiceLoss


class DiceCELoss(_monai_dice.DiceCELoss):
    """MONAI 1.6 ``monai.losses.DiceCELoss``: ``lambda_dice * Dice + lambda_ce * CE``, same constructor and numbers.

    The Dice term is :class:`fastgsl.monai.losses.DiceLoss` with MONAI's arguments (``weight`` without channel 0
    when ``include_background=False``).  The CE term reads the raw input, as MONAI's does (``sigmoid`` /
    ``softmax`` / ``other_act`` apply to the Dice term only):

    * ``C > 1``: ``torch.nn.CrossEntropyLoss(weight, label_smoothing)``.  With a label-map target (``(B, 1, ...)``)
      the sums are ``sum_c w_c sum_i -[y_i = c] log p_ic`` over ``sum_c w_c |{i : y_i = c}|`` (``B N`` without
      ``weight``); with a ``(B, C, ...)`` target, ``sum_c w_c sum_i -T_ic log p_ic`` over ``B N``.  With
      ``label_smoothing = e`` the loss is ``(1 - e) CE + e / C * sum_c w_c sum_i -log p_ic / (same normaliser)``;
      that last sum has no statistic in the pass and is taken with PyTorch's ``log_softmax`` (full-size).
    * ``C = 1``: ``torch.nn.BCEWithLogitsLoss(pos_weight=weight)``; with a ``weight`` it is PyTorch's own function.

    ``reduction="sum"`` sums instead of averaging (``"none"`` is rejected by MONAI's constructor).  When the Dice
    term's activation is the CE's (``softmax=True`` for ``C > 1``, ``sigmoid=True`` for ``C = 1``), both terms come
    from one statistics pass and one gradient pass.
    """

    def __init__(self, include_background: bool = True, to_onehot_y: bool = False, sigmoid: bool = False,
                 softmax: bool = False, other_act: Callable | None = None, squared_pred: bool = False,
                 jaccard: bool = False, reduction: str = "mean", smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                 batch: bool = False, weight: torch.Tensor | None = None, lambda_dice: float = 1.0,
                 lambda_ce: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(include_background=include_background, to_onehot_y=to_onehot_y, sigmoid=sigmoid,
                         softmax=softmax, other_act=other_act, squared_pred=squared_pred, jaccard=jaccard,
                         reduction=reduction, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, weight=weight,
                         lambda_dice=lambda_dice, lambda_ce=lambda_ce, label_smoothing=label_smoothing)
        # MONAI built its Dice term from these arguments; the same term on the fused pass replaces it
        d = self.dice
        self.dice = DiceLoss(include_background=d.include_background, to_onehot_y=d.to_onehot_y, sigmoid=d.sigmoid,
                             softmax=d.softmax, other_act=d.other_act, squared_pred=d.squared_pred,
                             jaccard=d.jaccard, reduction=d.reduction, smooth_nr=d.smooth_nr,
                             smooth_dr=d.smooth_dr, batch=d.batch, weight=d.class_weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() != target.dim():
            raise ValueError(
                "the number of dimensions for input and target should be the same, "
                f"got shape {input.shape} (nb dims: {len(input.shape)}) and {target.shape} "
                f"(nb dims: {len(target.shape)}). if target is not one-hot encoded, please provide a tensor with "
                "shape B1H[WD].")
        if target.shape[1] != 1 and target.shape[1] != input.shape[1]:
            raise ValueError("number of channels for target is neither 1 (without one-hot encoding) nor the same as "
                             f"input, got shape {input.shape} and {target.shape}.")
        p = prepare(self.dice, input, target)
        answered()
        C = input.shape[1]
        reduction = self.dice.reduction
        ce_act = "softmax" if C > 1 else "sigmoid"
        pos_weight = self.binary_cross_entropy.pos_weight if C == 1 else None
        ce_needs = set() if pos_weight is not None else {st.CE, st.ST}
        if p.act == ce_act and p.x is input:
            s_dice = s_ce = st.stats(input, p.target, ce_act, self.dice.needs() | ce_needs,
                                     labels=p.labels)
        else:
            s_dice = st.stats(p.x, p.target, p.act, self.dice.needs(), labels=p.labels)
            s_ce = st.stats(input, p.target, ce_act, ce_needs) if ce_needs else None
        f = self.dice.from_stats(s_dice, p.first)
        dice = f.mean() if reduction == "mean" else f.sum()
        if C == 1:
            if pos_weight is not None:
                ce = F.binary_cross_entropy_with_logits(input, p.target.to(input.dtype), pos_weight=pos_weight,
                                                        reduction=reduction)
            else:
                ce = s_ce[..., st.CE].sum()
                if reduction == "mean":
                    ce = ce / (input.shape[0] * p.num_voxels)
        else:
            ce = self._cross_entropy(input, p.target, s_ce, reduction, p.num_voxels)
        return self.lambda_dice * dice + self.lambda_ce * ce

    def _cross_entropy(self, input, target, s, reduction: str, n_voxels: int) -> torch.Tensor:
        B, C = input.shape[:2]
        w = self.cross_entropy.weight
        if w is not None and w.numel() != C:
            raise RuntimeError(f"weight tensor should be defined either for all {C} classes or no classes but got "
                               f"weight tensor of shape: {list(w.shape)}")
        wv = None if w is None else w.to(s)
        ce = s[..., st.CE]
        num = ce.sum() if wv is None else (ce * wv).sum()
        if target.dtype.is_floating_point or wv is None:
            norm = B * n_voxels
        else:  # class indices with weights: torch normalises by the summed weights of the voxels' classes
            norm = (s[..., st.ST].detach() * wv).sum()
        loss = num / norm if reduction == "mean" else num
        eps = self.cross_entropy.label_smoothing
        if eps > 0:
            logp = torch.log_softmax(input, 1).flatten(2).sum(-1)
            smooth = -(logp.sum(0) if wv is None else logp.sum(0) * wv).sum()
            loss = (1 - eps) * loss + eps / C * (smooth / norm if reduction == "mean" else smooth)
        return loss
