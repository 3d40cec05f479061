"""MONAI ``HausdorffDTLoss`` and ``LogHausdorffDTLoss`` with batched exact EDTs and the fused statistics pass."""
from __future__ import annotations

import torch
from monai.losses import hausdorff_loss as _monai_hd

from fastgsl.dtm import signed_distance
from fastgsl.monai import _stats as st
from fastgsl.monai._fallback import answered
from fastgsl.monai.losses._inputs import Prepared, prepare, reduce


def _distance_maps(p: Prepared, input: torch.Tensor, alpha: float):
    """``(D, Dp)``, each ``(B, C, *spatial)`` or None, with ``D^2 + Dp^2 = dp^alpha + dt^alpha`` for the pass's
    ``(T - P)^2 (D^2 + Dp^2)``.

    ``dt`` / ``dp`` are MONAI's distance fields of ``T > 0.5`` / ``P > 0.5``: ``EDT(m) + EDT(~m)``, each voxel's
    distance to the nearest voxel on the other side of the mask's boundary, and 0 everywhere for an empty or a full
    mask; that is the absolute value of fastgsl's ``"edt"`` signed map with ``fill="zero"``.  All masks of the batch,
    prediction and target, go to one EDT call; an excluded channel 0 gets no EDT, only zeros (its sums are dropped).

    In float32 ``D = dt^(alpha/2)`` and ``Dp = dp^(alpha/2)``; for ``alpha = 2`` these are the fields themselves and
    the pass's ``D*D + Dp*Dp`` is MONAI's float32 ``dp**2 + dt**2`` bit for bit.  For float64 inputs MONAI still
    adds the powers in float32, so that sum is formed here and ``D`` is its square root in float64 (``Dp`` None)."""
    first, C, B = p.first, input.shape[1], input.shape[0]
    with torch.no_grad():
        if p.act == "softmax":
            prob = torch.softmax(input, 1)
        elif p.act == "sigmoid":
            prob = torch.sigmoid(input)
        else:
            prob = p.x
        masks = torch.empty((2 * B, C - first) + tuple(input.shape[2:]), dtype=torch.bool, device=input.device)
        torch.gt(prob[:, first:], 0.5, out=masks[:B])
        if p.is_labels:
            classes = torch.arange(first, C, device=input.device).view((1, -1) + (1,) * p.spatial_dims)
            torch.eq(p.target.unsqueeze(1), classes, out=masks[B:])
        else:
            torch.gt(p.target[:, first:], 0.5, out=masks[B:])
        field = signed_distance(masks, None, spatial_dims=p.spatial_dims, convention="edt", fill="zero").abs_()
        del masks
        if first:  # the pass reads maps of every channel; channel 0's stats are dropped, so zeros will do
            field = torch.cat([field.new_zeros((2 * B, first) + field.shape[2:]), field], 1)
        if not p.target_dtype.is_floating_point:
            # MONAI writes the target's field into a tensor of the target's dtype: an integer one-hot target
            # truncates its distances
            field[B:] = field[B:].to(p.target_dtype).float()
        if input.dtype == torch.float64:
            if alpha != 1:
                field.pow_(alpha)
            return field[:B].add_(field[B:]).double().sqrt_(), None
        if alpha != 2:
            field.pow_(alpha / 2)
        return field[B:], field[:B]


class HausdorffDTLoss(_monai_hd.HausdorffDTLoss):
    """MONAI 1.6 ``monai.losses.HausdorffDTLoss``, same constructor and numbers, without MONAI's per-item scipy loop.

    Two-sided, per (item, included channel), or per channel with ``batch=True`` (the mean then runs over the batch
    too): ``f = mean_i (P_i - T_i)^2 (dp_i^alpha + dt_i^alpha)``, where ``dp`` / ``dt`` are the unsigned distance
    fields of ``P > 0.5`` and ``T > 0.5`` (see ``_distance_maps``), recomputed every call and constant for the
    gradient, as in MONAI.  Then ``reduction`` (``"none"``: ``(B, C', 1, ...)``, or ``(1, C', 1, ...)`` with
    ``batch``).  The fields of the whole batch (prediction and target together) are one call to fastgsl's exact
    EDT on the input's device; the loss and its gradient are one statistics pass and one gradient pass.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4 and input.dim() != 5:
            raise ValueError("Only 2D (NCHW) and 3D (NCHWD) supported")
        p = prepare(self, input, target)
        if p.target_dtype == torch.bool:
            raise RuntimeError("HausdorffDTLoss: a bool target is not supported (MONAI's loss fails on it too: it "
                               "subtracts the target from the input); pass a float one-hot target")
        answered()
        d, dp = _distance_maps(p, input, float(self.alpha))
        s = st.stats(p.x, p.target, p.act, {st.HAUS}, dtm=d, dtm_pred=dp, labels=p.labels)
        s = s[:, p.first:, st.HAUS]
        n = p.num_voxels
        f = s.sum(0, keepdim=True) / (n * s.shape[0]) if self.batch else s / n
        return reduce(f, self.reduction, p.spatial_dims)


class LogHausdorffDTLoss(HausdorffDTLoss):
    """MONAI 1.6 ``monai.losses.LogHausdorffDTLoss``: ``log(HausdorffDTLoss + 1)``, on :class:`HausdorffDTLoss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.log(super().forward(input, target) + 1)
