"""What every fastgsl loss shares: input checking, the on-the-fly DTM, and the stats-pass plumbing.

A loss here is two things: the set of voxel statistics it needs (``fastgsl.ops.voxel_stats``) and a function
``from_stats`` that turns the ``(B, C, K)`` statistics into the loss.  The second is the loss's math, and each
loss module holds its own.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from fastgsl import dtm as _dtm
from fastgsl.ops import voxel_stats as vs
from fastgsl.ops.voxel_stats.function import check_tensors, run_voxel_stats
from fastgsl.validation import LabelRange, check_choice, check_spacing, check_tensor

REDUCTIONS = ("mean", "sum", "none")


@dataclass
class Inputs:
    """Validated loss inputs: ``target`` is integer labels ``(B, *sp)`` or a float ``(B, C, *sp)`` tensor, ``dtm``
    the given ground-truth DTM (detached) or None.  ``labels``: the range integer labels must lie in, not checked
    yet: the statistics pass checks it as it reads them (:func:`shared_stats`); a path that reads the labels
    otherwise calls ``labels.check`` first."""

    logits: torch.Tensor
    target: torch.Tensor
    dtm: torch.Tensor | None
    label_offset: int
    spatial_dims: int
    labels: LabelRange | None

    @property
    def num_voxels(self) -> int:
        return self.logits[0, 0].numel()

    @property
    def is_labels(self) -> bool:
        return not self.target.dtype.is_floating_point


def check_inputs(logits, target, activation: str, dtm=None) -> Inputs:
    """Validate ``(logits, target, dtm)`` once and bring the target to its canonical form.

    The loss-level rules live here (2 or 3 spatial dimensions, a non-empty batch, softmax over more than one
    channel, the range of label values, which the statistics pass checks as it reads them); the tensor rules
    every caller of the op shares (dtypes, shapes, devices) are ``fastgsl.ops.voxel_stats.function.check_tensors``.
    ``activation`` was validated by the loss's constructor.
    """
    check_tensor("logits", logits)
    check_tensor("target", target)
    if logits.ndim not in (4, 5):
        raise ValueError("logits must be (B, C, *spatial) with 2 or 3 spatial dimensions, got shape "
                         f"{tuple(logits.shape)} ({logits.ndim - 2} spatial dimensions)")
    if logits.numel() == 0:
        raise ValueError(f"logits must not be empty (every dimension at least 1), got shape {tuple(logits.shape)}")
    B, C = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    if activation == "softmax" and C == 1:
        raise ValueError("softmax over a single channel is constant; use activation='sigmoid' for one channel")
    if target.dtype == torch.bool:
        target = target.to(logits.dtype)
    label_offset = 0
    if not target.dtype.is_floating_point and not target.is_complex():
        if tuple(target.shape) == (B, 1) + spatial:
            target = target[:, 0]
        label_offset = 1 if (activation == "sigmoid" and C == 1) else 0
    check_tensors(logits, target, dtm)
    if dtm is not None:
        dtm = dtm.detach()
    labels = None
    if not target.dtype.is_floating_point:
        labels = LabelRange("labels", C + label_offset, f" for {C} channels with activation={activation!r}")
    return Inputs(logits, target, dtm, label_offset, logits.ndim - 2, labels)


def target_dtm(x: Inputs, spacing, convention: str) -> torch.Tensor:
    """DTM of every target channel, computed on the fly on the logits' device.  Labels outside the range only
    match no class here; the statistics pass that follows rejects them."""
    sp = check_spacing(spacing, x.spatial_dims)
    if x.is_labels:
        if x.label_offset:
            return _dtm.signed_distance(x.target == x.label_offset, sp, spatial_dims=x.spatial_dims,
                                        convention=convention).unsqueeze(1)
        return _dtm.class_dtms(x.target, x.logits.shape[1], sp, convention)
    return _dtm.signed_distance(x.target > 0.5, sp, spatial_dims=x.spatial_dims, convention=convention)


def reduce(f: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return f.mean()
    if reduction == "sum":
        return f.sum()
    return f


def check_reduction(reduction: str, allowed=REDUCTIONS) -> str:
    return check_choice("reduction", reduction, allowed)


class StatsLoss(nn.Module):
    """Base of every loss computed from one statistics pass.

    Subclasses set ``self.needs`` (stat indices) in ``__init__`` and implement ``from_stats(stats, n_voxels)``.

    Args (shared by all losses, MONAI's meanings):
        include_background: if False, channel 0 is left out (ignored, as MONAI does, for a single channel).
        activation: ``"softmax"`` (mutually exclusive classes), ``"sigmoid"`` (independent, possibly
            overlapping regions such as BraTS WT/TC/ET) or ``"none"`` (the input already holds probabilities).
        batch: sum the statistics over the batch before the ratio, instead of one ratio per item.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the remaining (batch, class) entries.
        spacing: voxel spacing used when the loss computes the DTM itself (``dtm=None``).
        dtm_convention: the ``fastgsl.dtm`` convention used when the loss computes the DTM itself.
    """

    def __init__(self, *, include_background: bool = True, activation: str = "softmax", batch: bool = False,
                 reduction: str = "mean", spacing=None, dtm_convention: str = "itk"):
        super().__init__()
        check_choice("activation", activation, vs.ACTIVATIONS)
        check_choice("dtm_convention", dtm_convention, _dtm.DTM_CONVENTIONS)
        self.include_background = bool(include_background)
        self.activation = activation
        self.batch = bool(batch)
        self.reduction = check_reduction(reduction)
        self.spacing = spacing
        self.dtm_convention = dtm_convention
        self.needs: frozenset = frozenset()

    # -- the math of a loss lives in from_stats ---------------------------------------------------------------
    def from_stats(self, stats: torch.Tensor, n_voxels: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def require_logits(self) -> None:
        """Refuse ``activation="none"`` for a loss with a cross-entropy term (it needs logits)."""
        if self.activation == "none":
            raise ValueError(f"{type(self).__name__} needs logits: activation must be 'softmax' or 'sigmoid'")

    def set_class_weights(self, class_weights) -> None:
        """Store fixed per-class weights (``None`` or ``C`` finite, non-negative numbers) as a buffer."""
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float64).flatten()
            if class_weights.numel() == 0 or bool((class_weights < 0).any()) \
                    or not bool(class_weights.isfinite().all()):
                raise ValueError("class_weights must be non-empty, finite and non-negative")
        self.register_buffer("class_weights", class_weights, persistent=False)

    def weights_for(self, stats: torch.Tensor, first: int) -> torch.Tensor:
        """The stored class weights of the included channels, in the stats' dtype and device."""
        if self.class_weights.numel() != stats.shape[1]:
            raise ValueError(f"class_weights has {self.class_weights.numel()} entries for {stats.shape[1]} classes")
        return self.class_weights[first:].to(stats)

    def first_channel(self, channels: int) -> int:
        """Index of the first channel that counts (1 drops the background)."""
        if self.include_background:
            return 0
        if channels == 1:
            warnings.warn("single channel prediction, include_background=False ignored", stacklevel=3)
            return 0
        return 1

    def prediction_dtm(self, x: Inputs):
        """DTM of the thresholded prediction, for losses that need one (two-sided Hausdorff)."""
        return None

    # -- plumbing ---------------------------------------------------------------------------------------------
    def spec(self, x: Inputs) -> vs.StatSpec:
        return vs.StatSpec(self.activation, self.needs, x.label_offset)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, dtm: torch.Tensor | None = None) -> torch.Tensor:
        x = check_inputs(logits, target, self.activation, dtm)
        return self.from_stats(shared_stats(x, self.spec(x), (self,)), x.num_voxels)


def shared_stats(x: Inputs, spec: vs.StatSpec, losses) -> torch.Tensor:
    """The one statistics pass of ``spec`` on validated inputs, for one loss or several sharing it.

    The DTMs it needs: the given one, or the target's computed on the fly with the spacing and convention of the
    first loss in ``losses`` that reads a DTM; the thresholded prediction's from a loss that asks for it."""
    d = dp = None
    if spec.needs & vs.DTM_STATS:
        owner = next(loss for loss in losses if loss.needs & vs.DTM_STATS)
        d = target_dtm(x, owner.spacing, owner.dtm_convention) if x.dtm is None else x.dtm
        for loss in losses:
            if dp is None and vs.HAUS in loss.needs:
                dp = loss.prediction_dtm(x)
    return run_voxel_stats(x.logits, x.target, d, dp, spec, x.labels)
