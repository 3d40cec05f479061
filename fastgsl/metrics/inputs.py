"""The metrics' argument checks: the ``(pred, target)`` pair, binary masks or label maps turned into boolean masks,
the voxel spacing of each batch item, and the per-metric options (``percentile``, ``tolerance``).

The general rules (tensors, counts, label ranges, per-call spacing) are :mod:`fastgsl.validation`'s; what is
particular to the metrics (a pair of inputs, binary masks of any numeric dtype, one spacing row per item) is here.
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

from fastgsl.validation import check_integer_labels, check_label_range, check_positive_int, check_spacing, check_tensor


def check_pair(pred, target) -> None:
    """``pred`` and ``target`` are real tensors of one shape, device and dtype."""
    check_tensor("pred", pred)
    check_tensor("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred and target must be on the same device, got {pred.device} and {target.device}")
    if pred.dtype != target.dtype:
        raise TypeError(f"pred and target must have the same dtype, got {pred.dtype} and {target.dtype}")
    if pred.is_complex():
        raise TypeError(f"complex tensors are not supported, got {pred.dtype}")


def to_masks(pred, target, num_classes, include_background, spatial_dims):
    """Validate the inputs and return boolean masks ``(B, C', *spatial)`` for pred and target, and the number of
    spatial dimensions.

    Without ``num_classes`` the inputs are binary masks ``(B, C, *spatial)`` (bool, or any numeric dtype holding
    only 0 and 1); with it, integer label maps ``(B, *spatial)`` or ``(B, 1, *spatial)`` with values in
    ``[0, num_classes)``.  Channel / label 0 is dropped unless ``include_background``."""
    check_pair(pred, target)
    if not isinstance(include_background, bool):
        raise TypeError(f"include_background must be a bool, got {type(include_background).__name__}")
    first = 0 if include_background else 1
    if num_classes is None:
        nd = pred.ndim - 2
        if spatial_dims is not None and spatial_dims != nd:
            raise ValueError(f"binary masks must be (B, C, *spatial) with {spatial_dims} spatial dimensions, got "
                             f"shape {tuple(pred.shape)}")
        if nd not in (2, 3):
            raise ValueError(f"binary masks must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(pred.shape)}"
                             " (pass num_classes for integer label maps)")
        if pred.dtype != torch.bool:
            for name, x in (("pred", pred), ("target", target)):
                if x.numel() and bool(((x != 0) & (x != 1)).any()):
                    raise ValueError(f"{name} must be a binary mask holding only 0 and 1 (threshold or argmax "
                                     "first, or pass num_classes for a label map)")
            pred, target = pred != 0, target != 0
        return pred[:, first:], target[:, first:], nd
    check_positive_int("num_classes", num_classes)
    check_integer_labels("pred (a label map, as num_classes is given)", pred)
    if spatial_dims is None:
        spatial_dims = 3 if pred.ndim == 5 else pred.ndim - 1
    if spatial_dims not in (2, 3):
        raise ValueError(f"only 2-D and 3-D label maps are supported, got spatial_dims={spatial_dims} for shape "
                         f"{tuple(pred.shape)}")
    if pred.ndim == spatial_dims + 2:
        if pred.shape[1] != 1:
            raise ValueError(f"label maps must be (B, *spatial) or (B, 1, *spatial), got {tuple(pred.shape)}")
        pred, target = pred[:, 0], target[:, 0]
    elif pred.ndim != spatial_dims + 1:
        raise ValueError(f"label maps must be (B, *spatial) or (B, 1, *spatial) with {spatial_dims} spatial "
                         f"dimensions, got {tuple(pred.shape)}")
    for name, x in (("pred", pred), ("target", target)):
        # the metrics read their results on the host anyway, so the exact error costs no extra stall on a GPU
        check_label_range(f"{name} labels", x, num_classes, eager=True)
    classes = torch.arange(first, num_classes, device=pred.device).view((1, -1) + (1,) * spatial_dims)
    return pred.unsqueeze(1) == classes, target.unsqueeze(1) == classes, spatial_dims


def spacing_rows(spacing, batch: int, nd: int) -> list[tuple[float, ...]]:
    """One spacing tuple per batch item.

    ``spacing``: None, a number or ``nd`` numbers for the whole call (:func:`fastgsl.validation.check_spacing`'s
    rules), or a ``(batch, nd)`` nested sequence / array / tensor with a row per item, each row under the same
    rules."""
    if isinstance(spacing, torch.Tensor):
        spacing = spacing.detach().cpu().numpy()
    if isinstance(spacing, np.ndarray):
        spacing = spacing.tolist()  # Python numbers (or nested lists of them)
    elif isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        spacing = float(spacing)  # numpy scalars count as numbers
    try:
        if isinstance(spacing, (str, bytes)):  # numpy would parse "1.5" as a number
            raise TypeError
        shape = np.asarray(spacing, dtype=np.float64).shape
    except (TypeError, ValueError) as e:
        raise TypeError(f"spacing must be a number, a sequence of {nd} numbers or a (B, {nd}) array, got "
                        f"{spacing!r}") from e
    if len(shape) < 2:  # None, a number or one row: per call
        return [check_spacing(spacing, nd)] * batch
    if shape != (batch, nd):
        raise ValueError(f"spacing must be a number, a sequence of {nd} numbers (per call) or a (B={batch}, "
                         f"{nd}) nested sequence (per batch item), got shape {shape}")
    return [check_spacing(row, nd) for row in spacing]


def check_percentile(percentile) -> float | None:
    """None (the maximum) or a number in ``[0, 100]``, as a float."""
    if percentile is None:
        return None
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0 <= float(percentile) <= 100:
        raise ValueError(f"percentile must be None or a number in [0, 100], got {percentile!r}")
    return float(percentile)


def tolerances(tolerance, num_out: int) -> np.ndarray:
    """The surface Dice tolerance of each of the ``num_out`` output classes, float64: one number for every class
    or one per class, each finite and >= 0."""
    if isinstance(tolerance, torch.Tensor):
        tolerance = tolerance.detach().cpu().numpy()
    tol = np.asarray(tolerance, dtype=np.float64).reshape(-1)
    if tol.size == 1:
        tol = np.repeat(tol, num_out)
    if tol.size != num_out:
        raise ValueError(f"tolerance needs one value or one per output class ({num_out}), got {tol.size}")
    if not np.all(np.isfinite(tol)) or np.any(tol < 0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tol.tolist()}")
    return tol


__all__ = ["check_pair", "to_masks", "spacing_rows", "check_percentile", "tolerances"]
