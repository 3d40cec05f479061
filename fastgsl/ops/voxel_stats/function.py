"""The differentiable voxel-statistics op: input checks, engine dispatch and the ``autograd.Function``.

``voxel_stats(logits, target, dtm, dtm_pred, spec=...)`` is the one entry point every loss calls.  It checks the
tensors once (shapes, dtypes, devices, and that a DTM is given when a DTM stat is asked for), then runs both
passes on the Triton kernels (``triton_passes.py``) or on the host engines (``host.py``), as
``fastgsl.backend`` decides.  Label *values* follow the rule the caller passes (``labels``, a
:class:`fastgsl.validation.LabelRange`): the host C++ pass tests each label as it reads it, every other path
checks with a reduction of its own before the pass.
"""
from __future__ import annotations

import torch

from fastgsl import backend as _backend
from fastgsl import observe
from fastgsl.ops.voxel_stats.host import backward_host, check_labels_by_reduction, forward_host
from fastgsl.ops.voxel_stats.layout import DTM_STATS, HAUS
from fastgsl.ops.voxel_stats.spec import StatSpec
from fastgsl.validation import LabelRange


def _registered_ops():
    """Import the Triton passes, which registers ``torch.ops.fastgsl.voxel_stats_fwd`` / ``voxel_stats_bwd``."""
    from fastgsl.ops.voxel_stats import triton_passes  # noqa: F401  (triton is imported only when used)

    return torch.ops.fastgsl


def _use_triton(logits: torch.Tensor) -> bool:
    # fp64 always runs on the host path (in fp64, for gradcheck); the kernels accumulate in fp32.
    return _backend.resolve(logits.device) == "triton" and logits.dtype != torch.float64


class VoxelStatsFunction(torch.autograd.Function):
    """``S = voxel_stats(logits, target, dtm, dtm_pred)``; gradients flow to ``logits`` only.

    With ``use_triton`` both passes call the registered ops ``torch.ops.fastgsl.voxel_stats_fwd/_bwd`` (Triton
    kernels, traceable by ``torch.compile``); otherwise the host passes.  Only the inputs are saved for backward:
    nothing of the logits' size is kept between the passes.
    """

    @staticmethod
    def forward(ctx, logits, target, dtm, dtm_pred, spec, use_triton=False, use_atomics=False, labels=None):
        ctx.spec = spec
        ctx.use_triton = use_triton
        ctx.save_for_backward(logits, target, dtm, dtm_pred)
        if use_triton:
            return torch.ops.fastgsl.voxel_stats_fwd(logits, target, dtm, dtm_pred, spec.mask, spec.activation,
                                                     spec.label_offset, use_atomics)
        return forward_host(logits, target, dtm, dtm_pred, spec, labels)

    @staticmethod
    def backward(ctx, grad_stats):
        logits, target, dtm, dtm_pred = ctx.saved_tensors
        spec = ctx.spec
        if ctx.use_triton:
            grad = torch.ops.fastgsl.voxel_stats_bwd(grad_stats.contiguous(), logits, target, dtm, dtm_pred,
                                                     spec.mask, spec.activation, spec.label_offset)
        else:
            grad = backward_host(grad_stats.contiguous(), logits, target, dtm, dtm_pred, spec)
        return grad, None, None, None, None, None, None, None


def check_tensors(logits, target, dtm=None, dtm_pred=None):
    """The op's tensor rules: kinds, dtypes, shapes and devices (no reduction, no host sync).

    The one place these rules live: :func:`voxel_stats` applies them, and so do the losses' input checks (which
    then run the op through :func:`run_voxel_stats`)."""
    for name, x in (("logits", logits), ("target", target), ("dtm", dtm), ("dtm_pred", dtm_pred)):
        if x is not None and not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor{' or None' if name.startswith('dtm') else ''}, "
                            f"got {type(x).__name__}")
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.ndim < 3:
        raise ValueError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
    B = logits.shape[0]
    spatial = tuple(logits.shape[2:])
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but logits are on {logits.device}")
    if target.is_complex():
        raise TypeError(f"target must be integer labels or a real float tensor, got {target.dtype}")
    if target.dtype.is_floating_point:
        if target.shape != logits.shape:
            if tuple(target.shape) in ((B,) + spatial, (B, 1) + spatial):
                raise TypeError(f"target of shape {tuple(target.shape)} looks like a label map but is "
                                f"{target.dtype}; pass integer labels (e.g. target.long()) or a (B, C, *spatial) "
                                "one-hot / multi-label tensor")
            raise ValueError(f"float target must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(target.shape)}")
    elif tuple(target.shape) != (B,) + spatial:
        raise ValueError(f"integer labels must be (B, *spatial) = {(B,) + spatial}, got {tuple(target.shape)}")
    for name, d in (("dtm", dtm), ("dtm_pred", dtm_pred)):
        if d is None:
            continue
        if d.shape != logits.shape:
            raise ValueError(f"{name} must have the logits' shape {tuple(logits.shape)}, got {tuple(d.shape)}")
        if not d.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got {d.dtype}")
        if d.device != logits.device:
            raise ValueError(f"{name} is on {d.device} but logits are on {logits.device}")


def voxel_stats(logits, target, dtm=None, dtm_pred=None, *, spec: StatSpec,
                labels: LabelRange | None = None) -> torch.Tensor:
    """Differentiable ``(B, C, K)`` voxel statistics (``layout.py`` defines them).

    Args:
        logits: ``(B, C, *spatial)`` floating point; the only input that receives a gradient.
        target: integer labels ``(B, *spatial)`` (``T_c = (label == c + spec.label_offset)``) or a float
            ``(B, C, *spatial)`` target.
        dtm: ``(B, C, *spatial)`` ground-truth DTM; required when ``spec.needs`` holds a DTM stat, ignored
            otherwise.
        dtm_pred: ``(B, C, *spatial)`` DTM of the thresholded prediction, read only by ``HAUS`` (two-sided).
        spec: the stats, activation and label offset (:class:`StatSpec`).
        labels: the range integer labels must lie in (:class:`fastgsl.validation.LabelRange`), checked before
            anything is returned: by the host C++ pass, which tests each label as it reads it (no pass of its
            own), elsewhere by :meth:`LabelRange.check` (a reduction; a device-side assert on a GPU).  None: the
            caller has checked them.

    Runs on the Triton kernels or the host path as ``fastgsl.backend`` decides (``FASTGSL_BACKEND``).  On the
    kernels the reduction is fixed-order unless ``FASTGSL_ATOMICS=1`` (see ``fastgsl.backend.atomics_enabled``).
    """
    if not spec.needs & DTM_STATS:
        dtm = dtm_pred = None
    elif dtm is None:
        raise ValueError("a DTM statistic was requested but no dtm was given")
    elif HAUS not in spec.needs:
        dtm_pred = None  # only the two-sided Hausdorff stat reads it
    check_tensors(logits, target, dtm, dtm_pred)
    return run_voxel_stats(logits, target, dtm, dtm_pred, spec, labels)


def run_voxel_stats(logits, target, dtm, dtm_pred, spec: StatSpec, labels: LabelRange | None = None) -> torch.Tensor:
    """:func:`voxel_stats` on inputs that already passed :func:`check_tensors`, with the DTMs ``spec`` reads."""
    use_triton = _use_triton(logits)
    if use_triton:
        _registered_ops()
        observe.note("voxel_stats", "triton")
        if labels is not None and not target.dtype.is_floating_point:
            check_labels_by_reduction(labels, target)  # a device-side assert: the kernels do not test the labels
            labels = None
    return VoxelStatsFunction.apply(logits, target, dtm, dtm_pred, spec, use_triton,
                                    use_triton and _backend.atomics_enabled(), labels)


__all__ = ["voxel_stats", "run_voxel_stats", "check_tensors", "VoxelStatsFunction"]
