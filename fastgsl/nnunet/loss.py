"""fastgsl's losses wired as nnU-Net v2 wires its own (nnunetv2 2.8.1, ``nnUNetTrainer._build_loss``).

Region term, per output scale ``s`` (nnU-Net's ``DC_and_CE_loss`` / ``DC_and_BCE_loss`` with
``MemoryEfficientSoftDiceLoss``, ``smooth = 1e-5``, ``batch_dice`` from the plans)::

    R_s = CE(z_s, T_s) - mean_c (2 sum_i P T + 1e-5) / (sum_i P + sum_i T + 1e-5)

softmax + cross-entropy with the background left out of the Dice term, or, with regions, sigmoid + binary
cross-entropy over every region channel.  fastgsl's ``DiceCELoss`` computes ``CE + mean_c (1 - dc)`` in one fused
pass; the constant 1 is subtracted so the value equals nnU-Net's (and its logged losses stay comparable).
With DDP and batch Dice, nnU-Net all-gathers the Dice sums of every rank (``AllGatherGrad``); fastgsl's fused pass
does not expose its sums, so that case takes nnU-Net's own ``MemoryEfficientSoftDiceLoss(ddp=True)`` for the Dice
term and fastgsl's fused ``CrossEntropyLoss`` for the rest.

Composite, per scale (paper eq. 8): ``L_s = alpha R_s + (1 - alpha) B_s`` with ``B_s`` the GSL, boundary or
Hausdorff loss of the network's output at scale ``s`` against the DTM of nnU-Net's downsampled target at that
scale, computed on the fly with that scale's voxel spacing ``spacing / ds_scale_s``.  The total is
``sum_s w_s L_s`` with nnU-Net's deep-supervision weights ``w_s`` (terms with ``w_s = 0`` are skipped, as
``DeepSupervisionWrapper`` does).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fastgsl.losses import BoundaryLoss, CompositeLoss, CrossEntropyLoss, DiceCELoss, GeneralizedSurfaceLoss, \
    HausdorffLoss

#: nnUNetTrainer._build_loss: MemoryEfficientSoftDiceLoss(smooth=1e-5)
DICE_SMOOTH = 1e-5
#: the boundary terms a trainer can name
BOUNDARY_TERMS = ("gsl", "bl", "hl", "hl2")


class _DDPBatchDiceCE(nn.Module):
    """``CE + nnU-Net's all-gathered batch Dice``: the region term under DDP with ``batch_dice`` (module doc)."""

    def __init__(self, activation: str):
        super().__init__()
        from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
        from nnunetv2.utilities.helpers import softmax_helper_dim1

        regions = activation == "sigmoid"
        self.ce = CrossEntropyLoss(activation=activation)
        self.dc = MemoryEfficientSoftDiceLoss(apply_nonlin=torch.sigmoid if regions else softmax_helper_dim1,
                                              batch_dice=True, do_bg=regions, smooth=DICE_SMOOTH, ddp=True)

    def forward(self, logits, target, dtm=None):
        return self.ce(logits, target) + self.dc(logits, target)


def region_loss(*, regions: bool, batch_dice: bool, ddp: bool = False) -> tuple[nn.Module, float]:
    """The region term and the constant to subtract from it to get nnU-Net's value (module docstring)."""
    activation = "sigmoid" if regions else "softmax"
    if ddp and batch_dice:
        return _DDPBatchDiceCE(activation), 0.0
    return DiceCELoss(squared_pred=False, smooth_nr=DICE_SMOOTH, smooth_dr=DICE_SMOOTH, include_background=regions,
                      batch=batch_dice, activation=activation), 1.0


def boundary_loss(kind: str, *, regions: bool, spacing: Sequence[float], class_weights=None) -> nn.Module:
    """``"gsl"`` (eq. 12, eq. 13 ``class_weights``), ``"bl"`` (eq. 9), ``"hl"`` / ``"hl2"`` (eq. 7, one- / two-sided).

    The paper's settings: every channel kept (the background too), the ITK DTM convention, ``spacing`` in the
    tensor's axis order.
    """
    common = dict(activation="sigmoid" if regions else "softmax", spacing=tuple(float(s) for s in spacing))
    if kind == "gsl":
        return GeneralizedSurfaceLoss(class_weights=class_weights, **common)
    if kind == "bl":
        return BoundaryLoss(**common)
    if kind in ("hl", "hl2"):
        return HausdorffLoss(two_sided=kind == "hl2", **common)
    raise ValueError(f"boundary term must be one of {BOUNDARY_TERMS} or None, got {kind!r}")


class ScaleLoss(nn.Module):
    """The loss of one output scale: nnU-Net's region term alone, or ``alpha R + (1 - alpha) B`` (module doc)."""

    def __init__(self, region: nn.Module, offset: float, boundary: nn.Module | None = None, schedule=None,
                 regions: bool = False):
        super().__init__()
        self.offset, self.regions = float(offset), bool(regions)
        self.region = region if boundary is None else None
        self.composite = None if boundary is None else CompositeLoss(region, boundary, schedule)

    @property
    def alpha(self) -> float:
        return 1.0 if self.composite is None else self.composite.alpha

    def set_epoch(self, epoch: int) -> float:
        return 1.0 if self.composite is None else self.composite.set_epoch(epoch)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = self._target(logits, target)
        if self.composite is None:
            return self.region(logits, target) - self.offset
        return self.composite(logits, target) - self.alpha * self.offset

    def _target(self, logits, target):
        # nnU-Net hands label maps (B, 1, *spatial) as int16 or float, and region targets (B, R, *spatial) as
        # bool / uint8; fastgsl takes integer labels or float multi-label maps of the logits' shape
        if self.regions:
            return target if target.dtype == logits.dtype else target.to(logits.dtype)
        return target if target.dtype == torch.long else target.long()


class NNUNetLoss(nn.Module):
    """``sum_s w_s L_s`` over nnU-Net's outputs (a list with deep supervision, else one tensor).

    Args:
        num_classes: output channels (classes, or regions with ``regions=True``).
        spacing: the configuration's voxel spacing (plans), in the network's axis order.
        ds_scales: nnU-Net's deep-supervision scales (``nnUNetTrainer._get_deep_supervision_scales``), one
            per output, or None for one output at full resolution.
        ds_weights: nnU-Net's weights of those outputs (its ``DeepSupervisionWrapper.weight_factors``).
        boundary: None (the region term alone), or one of ``BOUNDARY_TERMS``.
        schedule: ``epoch -> alpha`` (``fastgsl.schedules``), needed with a boundary term.
        regions: sigmoid over (possibly overlapping) region channels, nnU-Net's region-based training.
        batch_dice: the plans' ``batch_dice``.
        class_weights: eq. 13 weights of the GSL (``fastgsl.weights.class_weights``), or None.
        ddp: nnU-Net runs under DDP (``nnUNetTrainer.is_ddp``).
    """

    def __init__(self, *, num_classes: int, spacing: Sequence[float], ds_scales=None, ds_weights=None,
                 boundary: str | None = None, schedule=None, regions: bool = False, batch_dice: bool = False,
                 class_weights=None, ddp: bool = False):
        super().__init__()
        spacing = tuple(float(s) for s in spacing)
        if ds_scales is None:
            ds_scales, ds_weights = [[1.0] * len(spacing)], [1.0]
        if ds_weights is None or len(ds_weights) != len(ds_scales):
            raise ValueError(f"need one deep-supervision weight per scale: {len(ds_scales)} scales, weights "
                             f"{ds_weights}")
        if boundary is not None and schedule is None:
            raise ValueError("a boundary term needs a schedule for alpha")
        self.num_classes = int(num_classes)
        self.weights = tuple(float(w) for w in ds_weights)
        self.spacings = []
        scales = []
        for s in ds_scales:
            if len(s) != len(spacing):
                raise ValueError(f"deep-supervision scale {list(s)} does not match the spacing {spacing}")
            sp = tuple(a / float(f) for a, f in zip(spacing, s))
            self.spacings.append(sp)
            region, offset = region_loss(regions=regions, batch_dice=batch_dice, ddp=ddp)
            b = None if boundary is None else boundary_loss(boundary, regions=regions, spacing=sp,
                                                            class_weights=class_weights)
            scales.append(ScaleLoss(region, offset, b, schedule, regions))
        self.scales = nn.ModuleList(scales)

    @property
    def alpha(self) -> float:
        return self.scales[0].alpha

    def set_epoch(self, epoch: int) -> float:
        """Set ``alpha = schedule(epoch)`` at every scale; returns it."""
        return [s.set_epoch(epoch) for s in self.scales][0]

    def forward(self, output, target) -> torch.Tensor:
        outputs = list(output) if isinstance(output, (list, tuple)) else [output]
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        if len(outputs) != len(self.scales) or len(targets) != len(self.scales):
            raise ValueError(f"expected {len(self.scales)} outputs and targets (one per deep-supervision scale), "
                             f"got {len(outputs)} and {len(targets)}")
        terms = [w * loss(o, t) for w, loss, o, t in zip(self.weights, self.scales, outputs, targets) if w != 0.0]
        return sum(terms[1:], terms[0])
