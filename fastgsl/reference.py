"""Naive reference formulas: each loss written directly as a chain of PyTorch ops on full-size tensors.

The oracle of the tests and the "naive" peer of the benchmarks (which is why it ships with the package rather
than under ``tests/``).  Independent of the op's implementations on purpose (one-hot targets, full probability
tensors, autograd for the gradient), so that the fused paths are compared against the plain formula; it reads
only the op's layout, to put each term at its index.  Slow and memory-hungry by design; never used by the losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgsl.ops.voxel_stats import layout as L


def probabilities(logits, activation="softmax"):
    if activation == "softmax":
        return torch.softmax(logits, 1)
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    return logits


def one_hot(target, channels: int, dtype=torch.float32):
    """(B, C, *sp) float target from integer labels (a one-channel target means labels {0, 1})."""
    if target.dtype.is_floating_point:
        return target.to(dtype)
    if target.ndim >= 2 and target.shape[1] == 1 and target.ndim in (4, 5):
        target = target[:, 0]
    if channels == 1:
        return (target == 1).unsqueeze(1).to(dtype)
    return F.one_hot(target.long(), channels).movedim(-1, 1).to(dtype)


def _sp(x):
    return tuple(range(2, x.ndim))


def dice(logits, target, *, squared_pred=True, include_background=True, batch=False, smooth_nr=1e-5,
         smooth_dr=1e-5, activation="softmax", reduction="mean"):
    p = probabilities(logits, activation)
    t = one_hot(target, logits.shape[1], p.dtype)
    if not include_background:
        p, t = p[:, 1:], t[:, 1:]
    dims = _sp(p)
    if batch:
        dims = (0,) + dims
    q = 2 if squared_pred else 1
    f = 1 - (2 * (p * t).sum(dims) + smooth_nr) / ((t ** q).sum(dims) + (p ** q).sum(dims) + smooth_dr)
    return f.mean() if reduction == "mean" else f.sum() if reduction == "sum" else f


def cross_entropy(logits, target, activation="softmax"):
    t = one_hot(target, logits.shape[1], logits.dtype)
    if activation == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits, t)
    return -(t * torch.log_softmax(logits, 1)).sum(1).mean()


def dice_ce(logits, target, lambda_dice=1.0, lambda_ce=1.0, activation="softmax", **dice_kw):
    return lambda_dice * dice(logits, target, activation=activation, **dice_kw) + \
        lambda_ce * cross_entropy(logits, target, activation)


def generalized_dice(logits, target, *, class_weights=None, squared_pred=False, include_background=True,
                     batch=False, smooth_nr=1e-5, smooth_dr=1e-5, activation="softmax"):
    p = probabilities(logits, activation)
    t = one_hot(target, logits.shape[1], p.dtype)
    if not include_background:
        p, t = p[:, 1:], t[:, 1:]
    dims = ((0,) if batch else ()) + _sp(p)
    q = 2 if squared_pred else 1
    inter, den = (p * t).sum(dims), (t ** q).sum(dims) + (p ** q).sum(dims)
    if class_weights is None:
        w = 1.0 / t.sum(dims) ** 2
        finite_max = torch.where(torch.isinf(w), 0.0, w).amax(-1, keepdim=True)
        w = torch.where(torch.isinf(w), finite_max, w)
    else:
        w = torch.as_tensor(class_weights, dtype=p.dtype)[0 if include_background else 1:]
    f = 1 - (2 * (w * inter).sum(-1) + smooth_nr) / ((w * den).sum(-1) + smooth_dr)
    return f.mean()


def boundary(logits, dtm, include_background=True, activation="softmax"):
    p = probabilities(logits, activation)
    first = 0 if include_background else 1
    return (dtm[:, first:] * p[:, first:]).mean()


def hausdorff(logits, target, dtm, dtm_pred=None, include_background=True, activation="softmax"):
    p = probabilities(logits, activation)
    t = one_hot(target, logits.shape[1], p.dtype)
    w = dtm ** 2 if dtm_pred is None else dtm ** 2 + dtm_pred ** 2
    first = 0 if include_background else 1
    return ((t - p) ** 2 * w)[:, first:].mean()


def generalized_surface(logits, target, dtm, class_weights=None, include_background=True,
                        class_reduction="weighted", smooth=1e-6, activation="softmax"):
    """Eq. 12 per sample then the batch mean ("weighted"), or MIST's per-(sample, class) mean ("mean")."""
    p = probabilities(logits, activation)
    t = one_hot(target, logits.shape[1], p.dtype)
    first = 0 if include_background else 1
    p, t, d = p[:, first:], t[:, first:], dtm[:, first:].to(p.dtype)
    num = ((d * (1 - (t + p))) ** 2).sum(_sp(p))
    den = (d ** 2).sum(_sp(p))
    if class_reduction == "mean":
        return (1 - num / (den + smooth)).mean()
    w = torch.ones(num.shape[1], dtype=p.dtype) if class_weights is None else \
        torch.as_tensor(class_weights, dtype=p.dtype)[first:]
    return (1 - (w * num).sum(1) / ((w * den).sum(1) + smooth)).mean()


def voxel_stats(z, t, d, dp, spec):
    """The ``(B, C, K)`` statistics of ``fastgsl.ops.voxel_stats`` from their definitions, with a one-hot target,
    in fp64 and differentiable in ``z`` (stats not in ``spec.needs`` are 0)."""
    B, C = z.shape[:2]
    zc = z.double().reshape(B, C, -1)
    if spec.activation == "softmax":
        p, logp = torch.softmax(zc, 1), torch.log_softmax(zc, 1)
    else:
        p, logp = (torch.sigmoid(zc) if spec.activation == "sigmoid" else zc), None
    if t.dtype.is_floating_point:
        T = t.double().reshape(B, C, -1)
    else:
        cls = torch.arange(C, device=t.device).view(1, C, 1) + spec.label_offset
        T = (t.reshape(B, 1, -1) == cls).double()
    D = d.double().reshape(B, C, -1)
    W = D * D if dp is None else D * D + dp.double().reshape(B, C, -1) ** 2
    if spec.activation == "softmax":
        ce = -(T * logp)
    elif spec.activation == "sigmoid":
        ce = F.binary_cross_entropy_with_logits(zc, T, reduction="none")
    else:
        ce = torch.zeros_like(p)
    terms = {L.I: p * T, L.SP: p, L.SP2: p * p, L.ST: T, L.ST2: T * T, L.CE: ce, L.SURF: ((1 - T - p) * D) ** 2,
             L.D2: D * D, L.DP: D * p, L.HAUS: (T - p) ** 2 * W}
    out = torch.stack([terms[k].sum(-1) for k in range(L.K)], -1)
    keep = torch.tensor([k in spec.needs for k in range(L.K)], device=out.device)
    return torch.where(keep, out, torch.zeros_like(out))


def voxel_stats_grad(z, t, d, dp, spec, grad_stats):
    """``d(sum(voxel_stats * grad_stats)) / dz`` by autograd, in fp64."""
    z64 = z.detach().double().requires_grad_()
    (g,) = torch.autograd.grad((voxel_stats(z64, t, d, dp, spec) * grad_stats.double()).sum(), z64)
    return g
