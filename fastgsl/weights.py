"""Class weights from dataset voxel counts (paper eqs. 13 and 17)."""
from __future__ import annotations

from typing import Iterable

import torch


def class_weights(voxel_counts, p: float = 1.0) -> torch.Tensor:
    """``w_k = N_k^-p / sum_j N_j^-p`` (eq. 17; ``p = 1`` is eq. 13), as a float64 tensor summing to 1.

    ``voxel_counts`` holds ``N_k``, the number of voxels of class ``k`` over the whole training set, background
    included.  A zero or negative count has no finite weight and is an error.
    """
    n = torch.as_tensor(voxel_counts, dtype=torch.float64).flatten().cpu()
    if n.numel() == 0:
        raise ValueError("voxel_counts is empty")
    if not bool(torch.isfinite(n).all()) or bool((n <= 0).any()):
        bad = [i for i, v in enumerate(n.tolist()) if not v > 0 or v != v or v == float("inf")]
        raise ValueError(f"every class needs a positive, finite voxel count; classes {bad} have {n[bad].tolist()}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
        raise ValueError(f"p must be a positive number, got {p!r}")
    # work in log space: counts of 1e8 to the power p would overflow or underflow
    logw = -float(p) * n.log()
    return torch.softmax(logw, 0)


def count_class_voxels(labels, num_classes: int, *, all_reduce: bool = False) -> torch.Tensor:
    """Voxels per class, ``(num_classes,)`` int64, over one integer label tensor or an iterable of them.

    With ``all_reduce=True`` and an initialised ``torch.distributed`` process group, the counts are summed over
    all ranks (each rank passing its own shard of the training split).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    items: Iterable = [labels] if isinstance(labels, torch.Tensor) else labels
    counts = None
    for lab in items:
        lab = torch.as_tensor(lab)
        if lab.dtype.is_floating_point or lab.dtype == torch.bool or lab.is_complex():
            raise TypeError(f"labels must be integer tensors, got {lab.dtype}")
        if lab.numel():
            lo, hi = torch.aminmax(lab)
            if lo.item() < 0 or hi.item() >= num_classes:
                raise ValueError(f"labels must lie in [0, {num_classes}), found [{lo.item()}, {hi.item()}]")
        c = torch.bincount(lab.flatten().long(), minlength=num_classes)
        counts = c if counts is None else counts + c.to(counts.device)
    if counts is None:
        raise ValueError("no label tensors were given")
    if all_reduce:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("all_reduce=True needs an initialised torch.distributed process group")
        if dist.get_backend() == "nccl" and counts.device.type != "cuda":
            counts = counts.cuda()
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts


__all__ = ["class_weights", "count_class_voxels"]
