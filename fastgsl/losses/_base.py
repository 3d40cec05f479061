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

REDUCTIONS = ("mean", "sum", "none")


@dataclass
class Inputs:
    """Validated loss inputs: ``target`` is integer labels ``(B, *sp)`` or a float ``(B, C, *sp)`` tensor."""

    logits: torch.Tensor
    target: torch.Tensor
    label_offset: int
    spatial_dims: int

    @property
    def num_voxels(self) -> int:
        return self.logits[0, 0].numel()

    @property
    def is_labels(self) -> bool:
        return not self.target.dtype.is_floating_point


def check_inputs(logits, target, activation: str) -> Inputs:
    """Validate ``(logits, target)`` and bring the target to its canonical form (raises ValueError/TypeError)."""
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("logits and target must be torch.Tensors, got "
                        f"{type(logits).__name__} and {type(target).__name__}")
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.ndim not in (4, 5):
        raise ValueError("logits must be (B, C, *spatial) with 2 or 3 spatial dimensions, got shape "
                         f"{tuple(logits.shape)} ({logits.ndim - 2} spatial dimensions)")
    if logits.device != target.device:
        raise ValueError(f"logits and target are on different devices: {logits.device} and {target.device}")
    B, C = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    if activation not in vs.ACTIVATIONS:
        raise ValueError(f"activation must be one of {vs.ACTIVATIONS}, got {activation!r}")
    if activation == "softmax" and C == 1:
        raise ValueError("softmax over a single channel is constant; use activation='sigmoid' for one channel")
    if target.dtype == torch.bool:
        target = target.to(logits.dtype)
    if target.is_complex():
        raise TypeError(f"target must be integer labels or a real float tensor, got {target.dtype}")
    label_offset = 1 if (activation == "sigmoid" and C == 1) else 0
    if not target.dtype.is_floating_point:
        if tuple(target.shape) == (B, 1) + spatial:
            target = target[:, 0]
        if tuple(target.shape) != (B,) + spatial:
            raise ValueError(f"integer labels must be (B, *spatial) or (B, 1, *spatial) = {(B,) + spatial}, "
                             f"got {tuple(target.shape)}")
        hi = C + label_offset
        if target.numel() and not torch.compiler.is_compiling():
            lo_v, hi_v = torch.aminmax(target)
            if lo_v.item() < 0 or hi_v.item() >= hi:
                raise ValueError(f"labels must lie in [0, {hi}) for {C} channels with activation={activation!r}; "
                                 f"found values in [{lo_v.item()}, {hi_v.item()}]")
    else:
        if tuple(target.shape) != tuple(logits.shape):
            if tuple(target.shape) in ((B,) + spatial, (B, 1) + spatial):
                raise TypeError(f"target of shape {tuple(target.shape)} looks like a label map but is "
                                f"{target.dtype}; pass integer labels (e.g. target.long()) or a (B, C, *spatial) "
                                "one-hot / multi-label tensor")
            raise ValueError(f"float target must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(target.shape)}")
        label_offset = 0
    return Inputs(logits, target, label_offset, logits.ndim - 2)


def check_dtm(dtm, x: Inputs, name: str = "dtm") -> torch.Tensor:
    if not isinstance(dtm, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(dtm).__name__}")
    if tuple(dtm.shape) != tuple(x.logits.shape):
        raise ValueError(f"{name} must have the logits' shape {tuple(x.logits.shape)}, got {tuple(dtm.shape)}")
    if not dtm.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {dtm.dtype}")
    if dtm.device != x.logits.device:
        raise ValueError(f"{name} is on {dtm.device} but logits are on {x.logits.device}")
    return dtm.detach()


def target_dtm(x: Inputs, spacing, convention: str) -> torch.Tensor:
    """DTM of every target channel, computed on the fly on the logits' device."""
    if x.is_labels:
        if x.label_offset:
            return _dtm.signed_distance(x.target == x.label_offset, spacing, spatial_dims=x.spatial_dims,
                                        convention=convention).unsqueeze(1)
        return _dtm.labels_to_dtm(x.target, x.logits.shape[1], spacing, convention, spatial_dims=x.spatial_dims)
    return _dtm.signed_distance(x.target > 0.5, spacing, spatial_dims=x.spatial_dims, convention=convention)


def reduce(f: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return f.mean()
    if reduction == "sum":
        return f.sum()
    return f


def check_reduction(reduction: str, allowed=REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


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
        if activation not in vs.ACTIVATIONS:
            raise ValueError(f"activation must be one of {vs.ACTIVATIONS}, got {activation!r}")
        if dtm_convention not in _dtm.CONVENTIONS:
            raise ValueError(f"dtm_convention must be one of {_dtm.CONVENTIONS}, got {dtm_convention!r}")
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
        x = check_inputs(logits, target, self.activation)
        d = dp = None
        if self.needs & vs.DTM_STATS:
            d = target_dtm(x, self.spacing, self.dtm_convention) if dtm is None else check_dtm(dtm, x)
            dp = self.prediction_dtm(x)
        stats = vs.voxel_stats(x.logits, x.target, d, dp, spec=self.spec(x))
        return self.from_stats(stats, x.num_voxels)
