"""MONAI ``DiceLoss`` and ``GeneralizedDiceLoss`` on fastgsl's fused statistics pass."""
from __future__ import annotations

import torch
from monai.losses import dice as _monai_dice

from fastgsl.monai import _stats as st
from fastgsl.monai._fallback import answered, fall_back
from fastgsl.monai.losses._inputs import Prepared, binary_target, in_unit_interval, prepare, reduce


def _soft_label_exact(p: Prepared) -> bool:
    # MONAI's soft_label formula with ord 1 is tp = (sum|P| + sum|T| - sum|P - T|) / 2, which equals sum P T
    # exactly when T is binary and 0 <= P <= 1; elsewhere it is not a function of the pass's sums.
    return binary_target(p) and in_unit_interval(p)


class DiceLoss(_monai_dice.DiceLoss):
    """MONAI 1.6 ``monai.losses.DiceLoss``, same constructor and numbers, computed by one fused statistics pass.

    Per (batch item, included channel), or per channel with ``batch=True`` (sums over the batch too), from
    ``tp = sum P T`` and ``o_P = sum P^q``, ``o_T = sum T^q`` (``q = 2`` with ``squared_pred``, else 1),
    ``fp = o_P - tp``, ``fn = o_T - tp``:

        ``f = 1 - (2 tp + smooth_nr) / (2 (tp + s fp + s fn) + smooth_dr)``,  ``s = 1/2`` (Dice) or 1 (``jaccard``),

    i.e. ``1 - (2 tp + nr) / (o_P + o_T + dr)`` for Dice; then ``weight`` per channel (MONAI's rules), then
    ``reduction`` (``"none"``: shape ``(B, C', 1, ...)``, or ``(C', 1, ...)`` with ``batch``).  ``P`` is the input
    after ``sigmoid`` / ``softmax`` (applied inside the pass) or ``other_act`` (any callable, run in PyTorch); the
    target is one-hot (float) or, with ``to_onehot_y``, a label map read as such (no one-hot tensor is built).
    MONAI's single-channel warnings and its exceptions are kept.

    Falls back to MONAI's own ``forward`` (one-time ``FallbackWarning``) for ``ignore_index`` (voxel masking is not
    a per-class sum of the pass), and for ``soft_label=True`` without ``squared_pred`` when the target is not binary
    or the prediction leaves [0, 1] (MONAI's L1 soft formula is then not a function of the pass's sums).
    """

    def needs(self) -> frozenset:
        return frozenset({st.I, st.SP2, st.ST2} if self.squared_pred else {st.I, st.SP, st.ST})

    def fallback_reason(self, p: Prepared) -> str | None:
        if self.ignore_index is not None:
            return "ignore_index"
        if self.soft_label and not self.squared_pred and not _soft_label_exact(p):
            return "soft_label=True with a non-binary target or a prediction outside [0, 1]"
        return None

    def from_stats(self, s: torch.Tensor, first: int) -> torch.Tensor:
        """Unreduced ``f`` from the ``(B, C, K)`` statistics: ``(B, C')``, or ``(C',)`` with ``batch``."""
        s = s[:, first:]
        if self.batch:
            s = s.sum(0)
        tp = s[..., st.I]
        o_p, o_t = (s[..., st.SP2], s[..., st.ST2]) if self.squared_pred else (s[..., st.SP], s[..., st.ST])
        fp, fn = o_p - tp, o_t - tp
        if not self.jaccard:
            fp, fn = fp * 0.5, fn * 0.5
        f = 1 - (2 * tp + self.smooth_nr) / (2 * (tp + fp + fn) + self.smooth_dr)
        n = f.shape[-1]
        w = self.class_weight
        if w is not None and n != 1:
            if w.ndim == 0:
                w = w.expand(n)
            elif w.shape[0] != n:
                raise ValueError(
                    "The length of the `weight` sequence should be the same as the number of classes. "
                    "If `include_background=False`, the weight should not include the background category class 0.")
            if w.min() < 0:
                raise ValueError("the value/values of the `weight` should be no less than 0.")
            f = f * w.to(f)
        return f

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = prepare(self, input, target)
        reason = self.fallback_reason(p)
        if reason is not None:
            fall_back("DiceLoss", reason)
            return super().forward(input, target)
        answered()
        f = self.from_stats(st.stats(p.x, p.target, p.act, self.needs(), labels=p.labels), p.first)
        return reduce(f, self.reduction, p.spatial_dims)


class GeneralizedDiceLoss(_monai_dice.GeneralizedDiceLoss):
    """MONAI 1.6 ``monai.losses.GeneralizedDiceLoss``, same constructor and numbers, on one fused statistics pass.

    With ``tp = sum P T``, ``o_P = sum P``, ``o_T = sum T`` per (item, included channel) (summed over the batch with
    ``batch=True``) and MONAI's class weights ``w = w_type(o_T)`` (``"square"``: ``1/o_T^2``, ``"simple"``:
    ``1/o_T``, ``"uniform"``: 1; an infinite weight, from an absent class, becomes the largest finite weight of the
    item, or of the batch with ``batch=True``):

        ``f = 1 - (2 sum_c w_c tp_c + smooth_nr) / (sum_c w_c (o_P,c + o_T,c) + smooth_dr)``

    one value per item (one with ``batch``), then ``reduction`` (``"none"``: ``(B, 1, 1, ...)`` or ``(1, 1, ...)``).
    Falls back to MONAI for ``soft_label=True`` with a non-binary target or a prediction outside [0, 1].
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = prepare(self, input, target, "differing shape")
        if self.soft_label and not _soft_label_exact(p):
            fall_back("GeneralizedDiceLoss", "soft_label=True with a non-binary target or a prediction outside [0, 1]")
            return super().forward(input, target)
        answered()
        s = st.stats(p.x, p.target, p.act, {st.I, st.SP, st.ST}, labels=p.labels)[:, p.first:]
        if self.batch:
            s = s.sum(0)
        tp, o_p, o_t = s[..., st.I], s[..., st.SP], s[..., st.ST]
        fp, fn = (o_p - tp) * 0.5, (o_t - tp) * 0.5
        denominator = 2 * (tp + fp + fn)
        w = self.w_func(o_t.detach().float())  # o_T does not depend on P: the weights carry no gradient
        infs = torch.isinf(w)
        w = torch.where(infs, 0.0, w)
        w = w + infs * (w.max() if self.batch else w.max(dim=1)[0].unsqueeze(dim=1))
        dim = 0 if self.batch else 1
        numer = 2.0 * (tp * w).sum(dim, keepdim=True) + self.smooth_nr
        denom = (denominator * w).sum(dim, keepdim=True) + self.smooth_dr
        return reduce(1.0 - numer / denom, self.reduction, p.spatial_dims)
