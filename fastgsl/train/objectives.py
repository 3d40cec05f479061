"""The paper's losses as training objectives: names, alpha schedules and class weights (sections 1.1, 2, 2.4).

Region losses (``dl``, ``dice_ce``, ``gdl``) are used alone.  Boundary losses (``hl``, ``bl``, ``gsl``) are
combined with Dice-CE as in eq. 8, ``alpha * DiceCE + (1 - alpha) * boundary``, with ``alpha`` from the
schedule (the paper's ``L_region`` is Dice-CE, section 2.4).  Every loss keeps the background channel of a
softmax task (the authors' code does) and averages one value per batch item (``batch=False``), which makes the
loss of a global batch the mean of the per-rank losses, as DDP's gradient averaging assumes.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from fastgsl.train.preprocess import TaskSpec

LOSS_LABELS = {"dl": "DL", "dice_ce": "Dice-CE", "gdl": "GDL", "hl": "HL", "bl": "BL", "gsl": "GSL"}
BOUNDARY_LOSSES = ("hl", "bl", "gsl")


def parse_schedule(text: str, epochs: int, warmup: int = 0):
    """``linear``, ``step:H``, ``cosine`` or ``constant:A`` -> ``(label as in Table 2, schedule)``."""
    from fastgsl.schedules import ConstantSchedule, CosineSchedule, LinearSchedule, StepSchedule
    name, _, arg = text.partition(":")
    try:
        if name == "linear" and not arg:
            return "Linear", LinearSchedule(epochs, warmup_epochs=warmup)
        if name == "cosine" and not arg:
            return "Cosine", CosineSchedule(epochs, warmup_epochs=warmup)
        if name == "step" and arg:
            return f"Step - {int(arg)}", StepSchedule(epochs, int(arg), warmup_epochs=warmup)
        if name == "constant" and arg:
            return f"Constant - {float(arg):g}", ConstantSchedule(float(arg))
    except ValueError as e:
        raise ValueError(f"--schedule {text!r}: {e}") from e
    raise ValueError(f"--schedule {text!r} is not one of: linear, step:H, cosine, constant:A")


def voxel_counts(cases: list, spec: TaskSpec, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Voxels per output channel over the training cases (eq. 13's ``N_k``), each rank counting its shard
    ``cases[rank::world]`` and the counts all-reduced when a process group is running."""
    mine = cases[rank::world]
    distributed = dist.is_available() and dist.is_initialized() and world > 1
    if spec.kind == "labels":
        from fastgsl.weights import count_class_voxels
        tensors = [torch.from_numpy(c.target.astype("int64")) for c in mine] or [torch.zeros(0, dtype=torch.int64)]
        return count_class_voxels(tensors, spec.out_channels, all_reduce=distributed).cpu()
    counts = torch.zeros(spec.out_channels, dtype=torch.int64)
    for c in mine:
        counts += torch.from_numpy(c.target.reshape(c.target.shape[0], -1).sum(1).astype("int64"))
    if distributed:
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        counts = counts.to(dev)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts.cpu()


def build_loss(name: str, spec: TaskSpec, schedule=None, *, spacing=None, class_weights=None) -> torch.nn.Module:
    """The objective called ``name`` (``LOSS_LABELS``) for ``spec``'s activation.

    ``spacing`` is the voxel spacing the loss uses when it computes the DTM itself (``dtm=None``);
    ``class_weights`` are GSL's eq. 13 weights (None: uniform).
    """
    from fastgsl import losses as L
    if name not in LOSS_LABELS:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSS_LABELS)}")
    common = dict(activation=spec.activation, include_background=True, spacing=spacing)
    if name == "dl":
        return L.DiceLoss(**common)
    if name == "dice_ce":
        return L.DiceCELoss(**common)
    if name == "gdl":
        return L.GeneralizedDiceLoss(**common)
    if schedule is None:
        raise ValueError(f"loss {name!r} is a boundary loss and needs an alpha schedule")
    boundary = {"hl": lambda: L.HausdorffLoss(**common),
                "bl": lambda: L.BoundaryLoss(**common),
                "gsl": lambda: L.GeneralizedSurfaceLoss(class_weights=class_weights, **common)}[name]()
    return L.CompositeLoss(L.DiceCELoss(**common), boundary, schedule)
