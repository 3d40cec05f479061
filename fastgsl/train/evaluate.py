"""Held-out evaluation: sliding-window inference, then Dice, HD95 and ASD with the paper's convention.

Inference is MONAI's ``sliding_window_inference`` over the whole preprocessed case (patch-sized windows, 50%
overlap, Gaussian weighting, as nnU-Net).  The prediction is the argmax of the softmax (labels) or the sigmoid
thresholded at 0.5 (regions).  Metrics are ``fastgsl.metrics`` with ``convention="paper"`` and
``empty="paper"`` (the authors' SimpleITK evaluation: both masks empty -> Dice 1 and distances 0; one empty ->
Dice 0 and the image diagonal in mm), computed in the preprocessed space with its spacing.  Background is not
evaluated.

Each row also counts the connected components (26-connectivity) that explain a large HD95: ``missed``, ground-truth
components no predicted voxel touches, and ``spurious``, predicted components that touch no ground-truth voxel,
each with the fraction of the mask's voxels they hold.

Cases are split over DDP ranks (``cases[rank::world]``) and the rows gathered, so every rank returns the same
list in the same order.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from scipy import ndimage

from fastgsl.train.preprocess import Case, TaskSpec


def autocast(device: torch.device, amp: str):
    if amp == "off":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict(model: torch.nn.Module, image: np.ndarray, spec: TaskSpec, patch, device: torch.device,
            amp: str = "off", overlap: float = 0.5, sw_batch_size: int = 2) -> np.ndarray:
    """Masks ``(C', *sp)`` bool of the evaluated channels (foreground classes or regions) for one image."""
    from monai.inferers import sliding_window_inference
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(image))[None].to(device)
    with autocast(device, amp):
        logits = sliding_window_inference(x, roi_size=tuple(patch), sw_batch_size=sw_batch_size, predictor=model,
                                          overlap=overlap, mode="gaussian")
    logits = logits.float()[0]
    if spec.kind == "labels":
        lab = logits.argmax(0)
        return torch.stack([lab == k for k in range(1, spec.out_channels)]).cpu().numpy()
    return (torch.sigmoid(logits) > 0.5).cpu().numpy()


def target_masks(case: Case, spec: TaskSpec) -> np.ndarray:
    if spec.kind == "labels":
        return np.stack([case.target == k for k in range(1, spec.out_channels)])
    return case.target.astype(bool)


def case_metrics(pred: np.ndarray, truth: np.ndarray, spacing, device: torch.device) -> dict:
    """``{"dice", "hd95", "asd"}``, each a list over channels, for bool masks ``(C', *sp)``."""
    from fastgsl.metrics import average_surface_distance, dice_score, hausdorff_distance
    p = torch.from_numpy(pred)[None].to(device)
    t = torch.from_numpy(truth)[None].to(device)
    kw = dict(include_background=True, convention="paper", empty="paper")
    return {"dice": dice_score(p, t, **kw)[0].tolist(),
            "hd95": hausdorff_distance(p, t, spacing=spacing, percentile=95.0, **kw)[0].tolist(),
            "asd": average_surface_distance(p, t, spacing=spacing, **kw)[0].tolist()}


def unmatched_components(pred: np.ndarray, truth: np.ndarray) -> dict:
    """The components (26-connected) of bool masks ``(*sp)`` that the other mask does not touch.

    ``missed``: the components of ``truth`` that no voxel of ``pred`` overlaps, and ``missed_fraction`` their
    voxels over those of ``truth``; ``spurious`` and ``spurious_fraction``: the components of ``pred`` that
    overlap no voxel of ``truth``, over the voxels of ``pred`` (0 for an empty mask).  Under the paper's HD95
    (a percentile over every foreground voxel) a fraction above 5% at a distance sets the HD95 by itself.
    """
    def lonely(a, b):
        cc, n = ndimage.label(a, structure=np.ones((3,) * a.ndim, bool))
        if n == 0:
            return 0, 0.0
        hit = np.zeros(n + 1, bool)
        hit[cc[b]] = True
        hit[0] = True
        return int(n + 1 - hit.sum()), float((~hit[cc]).sum() / a.sum())
    missed, missed_fraction = lonely(truth, pred)
    spurious, spurious_fraction = lonely(pred, truth)
    return {"missed": missed, "spurious": spurious, "missed_fraction": missed_fraction,
            "spurious_fraction": spurious_fraction}


def preview_slice(case: Case, spec: TaskSpec, truth: np.ndarray) -> int:
    """Index along the last axis with the most ground-truth foreground (the slice shown in the figure)."""
    area = truth.reshape(truth.shape[0], -1, truth.shape[-1]).any(0).sum(0)
    return int(np.argmax(area)) if area.any() else truth.shape[-1] // 2


def evaluate(model: torch.nn.Module, cases: list, spec: TaskSpec, patch, ctx, amp: str = "off",
             previews: bool = False, sw_batch_size: int = 2) -> tuple:
    """``(rows, previews)`` over ``cases``.  ``rows``: one dict per (case, channel) with ``case``, ``class``,
    ``dice``, ``hd95``, ``asd`` and the keys of :func:`unmatched_components`.  ``previews`` (when asked):
    ``{case: (image slice, truth slice, pred slice)}`` on the slice of :func:`preview_slice`, the image being the
    last channel (FLAIR for BraTS)."""
    rows, views = [], {}
    for case in cases[ctx.rank::ctx.world]:
        pred = predict(model, case.image, spec, patch, ctx.device, amp, sw_batch_size=sw_batch_size)
        truth = target_masks(case, spec)
        m = case_metrics(pred, truth, case.spacing, ctx.device)
        for k, name in enumerate(spec.class_names):
            rows.append({"case": case.name, "class": name, "dice": m["dice"][k], "hd95": m["hd95"][k],
                         "asd": m["asd"][k], **unmatched_components(pred[k], truth[k])})
        if previews:
            z = preview_slice(case, spec, truth)
            views[case.name] = (case.image[-1][..., z].astype(np.float32), truth[..., z], pred[..., z])
    gathered = ctx.gather_objects((rows, views))
    order = {c.name: i for i, c in enumerate(cases)}
    rows = sorted((r for g in gathered for r in g[0]),
                  key=lambda r: (order[r["case"]], spec.class_names.index(r["class"])))
    views = {k: v for g in gathered for k, v in g[1].items()}
    return rows, views


def summarize(rows: list) -> dict:
    """Mean of each metric over the rows (all channels and cases), for the training log."""
    return {k: float(np.mean([r[k] for r in rows])) for k in ("dice", "hd95", "asd")} if rows else {}
