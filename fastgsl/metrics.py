"""Segmentation metrics on the device, batched: Dice, Hausdorff (HD, HD-percentile), average surface distance, and
normalised surface Dice.

Every function takes ``pred`` and ``target`` either as binary masks ``(B, C, *spatial)`` (bool, or any numeric
dtype holding only 0 and 1) or, with ``num_classes``, as integer label maps ``(B, *spatial)`` / ``(B, 1, *spatial)``,
in 2-D or 3-D, and returns a ``(B, C')`` float32 tensor on the inputs' device, where ``C' = C - 1`` unless
``include_background=True``.  There is no per-item loop in this module: the distance work of a whole batch is one
call, either to the batched exact EDT (:func:`fastgsl.ops.edt.distance_to_sites`, once per distinct spacing) or, on the
CPU, to the batched k-d tree search of :mod:`fastgsl.ops.nearest`, which measures only the query voxels.

Distances (``FASTGSL_METRIC_DISTANCES``): ``auto`` (default) takes the dense EDT on a GPU, and on the CPU whichever
of the two costs less by a simple model (the EDT: the cropped box volume; the tree: searched voxels x log2 of the
sites); ``dense`` and ``sparse`` force one.  Both give the same distances: bit-identical with unit or dyadic
spacing, otherwise up to the EDT's own float64 rounding.

Conventions (``convention=``), as listed in ``shared/CONVENTIONS.md`` and checked in ``tests/test_metrics.py``
against the peers themselves:

``"monai"`` (default): MONAI 1.6 ``compute_hausdorff_distance``, ``compute_average_surface_distance`` and
    ``compute_surface_dice(use_subvoxels=False)``.  The surface of a mask ``M`` is its set of edge voxels
    ``E(M) = M xor erode(M)``, the erosion being scipy's ``binary_erosion`` default: the cross-shaped
    (face-connected, 4 in 2-D / 6 in 3-D) structuring element with the image border counted as background
    (``border_value=0``), so object voxels on the image border are edges.  ``d(x, Y)`` is the Euclidean distance,
    with spacing, from the centre of voxel ``x`` to the nearest voxel centre of ``Y``.  The directed distance set
    from ``pred`` to ``target`` is ``D(P->T) = {d(x, E(T)) : x in E(P)}``.
``"paper"``: the SimpleITK evaluation of the paper's code.  HD(-percentile) runs over all foreground voxels:
    ``D(P->T) = {max(SignedMaurer_T(x), 0) : x in P}`` with ``SignedMaurerDistanceMap(useImageSpacing=True)``,
    i.e. the distance to the nearest voxel of ``T`` (0 inside ``T``).  ASD and surface Dice run over
    ``LabelContour`` voxels (object voxels with a face neighbour of background inside the image; the border is
    not background): ``D(P->T) = {|SignedMaurer_T(x)| : x in LabelContour(P)}``, where ``|SignedMaurer_T|`` is the
    distance to the contour of ``T`` (object voxels with a background voxel among their 8 / 26 neighbours).

Hausdorff distance (``hausdorff_distance``): ``max(Q_p(D(P->T)), Q_p(D(T->P)))``, or ``Q_p(D(P->T))`` alone with
``directed=True``.  ``Q_p`` is the maximum when ``percentile`` is None, otherwise the linear-interpolated quantile
of numpy's / torch's default method: with the set sorted as ``v_0 <= ... <= v_{n-1}``, ``r = p/100 * (n - 1)``,
``Q_p = v_floor(r) + (r - floor(r)) * (v_ceil(r) - v_floor(r))``.  The two order statistics are found by an exact
batched radix selection on the float bits (no sort of the distance sets); ``r`` is evaluated in float64.  Note:
MONAI treats ``percentile=0`` as "no percentile" and returns the maximum; here 0 means the minimum.

Average surface distance (``average_surface_distance``): ``"monai"``, symmetric: the mean of the union (the
concatenation) of both directed sets, ``(sum D(P->T) + sum D(T->P)) / (|E(P)| + |E(T)|)``; ``"paper"``, symmetric:
the mean of the two directed means.  ``symmetric=False`` gives the directed mean of ``D(P->T)``.

Surface Dice (``surface_dice``): ``(|{d in D(P->T): d <= tau}| + |{d in D(T->P): d <= tau}|) / (|D(P->T)| +
|D(T->P)|)`` with the tolerance ``tau`` in physical units (MONAI ``compute_surface_dice`` with
``use_subvoxels=False``; DeepMind's surfel-area weighting is *not* reproduced).

Dice (``dice_score``): ``2 |P n T| / (|P| + |T|)``, as MONAI ``compute_dice`` and SimpleITK
``LabelOverlapMeasuresImageFilter``.

Empty masks (``empty=``; the default is ``"nan"`` for ``"monai"`` and ``"paper"`` for ``"paper"``).  A mask is
*absent* when it has no foreground voxel; for the ``"paper"`` ASD and surface Dice, which run over contours, a
full mask (no background voxel, hence no contour) is absent too.  Per (item, class):

* HD, HD-percentile and ASD (symmetric or directed, whichever side is absent): ``"nan"`` gives nan when both are
  absent and +inf when one is; ``"paper"`` gives 0 when both are absent and the image diagonal
  ``sqrt(sum_i (n_i * spacing_i)^2)`` (physical units, full image shape, as ``fastgsl.dtm``'s
  ``fill="diagonal"``) when one is.
* Surface Dice: ``"nan"``: nan when both are absent, 0 when one is (MONAI); ``"paper"``: 1 and 0.
* Dice: ``"nan"``: nan whenever the *target* is empty (MONAI ``compute_dice(ignore_empty=True)``);
  ``"paper"``: 1 when both are empty, 0 when one is.

Where the peers differ: with one mask empty and a percentile, MONAI returns nan (``torch.quantile`` of all-inf
distances interpolates ``inf - inf``; MONAI issue 9095) while fastgsl returns +inf, as for the plain HD.  SimpleITK
gives +-1.8e19 maps for an empty or full mask and an ``inf`` Dice for two empty masks; these never reach a result,
the policy above decides instead.  (A full mask is not absent for HD(-percentile) under ``"paper"``: its signed
map is negative everywhere, clamped to 0, which SimpleITK reproduces.)

Spacing (``spacing=``): None (1), a number (isotropic), a sequence of ``spatial_dims`` numbers in tensor axis order
(per call), or a ``(B, spatial_dims)`` nested sequence / array / tensor (per batch item).
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Sequence

import numpy as np
import torch

from fastgsl.ops import nearest
from fastgsl.ops.edt import distance_to_sites

CONVENTIONS = ("monai", "paper")
EMPTY_POLICIES = ("nan", "paper")
#: ``FASTGSL_METRIC_DISTANCES``: how the query voxels get their distances (``auto``: module docstring)
DISTANCE_PATHS = ("auto", "dense", "sparse")
#: cost of one k-d tree query step relative to one voxel of the dense EDT (both maps), measured on the CPU
_SPARSE_COST = 1.2
_MAX_TREE = 2 ** 31 - 1
#: how the latest call got its distances: "sparse" (k-d tree), "dense" (EDT) or None (no call, or nothing to measure)
last_distance_path: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# input handling

def _check_pair(pred, target):
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred and target must be on the same device, got {pred.device} and {target.device}")
    if pred.dtype != target.dtype:
        raise TypeError(f"pred and target must have the same dtype, got {pred.dtype} and {target.dtype}")
    if pred.is_complex():
        raise TypeError(f"complex tensors are not supported, got {pred.dtype}")


def _prepare(pred, target, num_classes, include_background, spatial_dims):
    """Validate the inputs and return boolean masks ``(B, C', *spatial)`` for pred and target, and spatial_dims."""
    _check_pair(pred, target)
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
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if pred.dtype.is_floating_point or pred.dtype == torch.bool:
        raise TypeError(f"label maps (num_classes given) must be integer tensors, got {pred.dtype}")
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
        if x.numel():
            lo, hi = torch.aminmax(x)
            lo, hi = int(lo), int(hi)
            if lo < 0 or hi >= num_classes:
                raise ValueError(f"{name} labels must lie in [0, {num_classes}), found values in [{lo}, {hi}]")
    classes = torch.arange(first, num_classes, device=pred.device).view((1, -1) + (1,) * spatial_dims)
    return pred.unsqueeze(1) == classes, target.unsqueeze(1) == classes, spatial_dims


def _spacings(spacing, batch: int, nd: int) -> list[tuple[float, ...]]:
    """One spacing tuple per batch item."""
    if spacing is None:
        rows = np.ones((batch, nd))
    else:
        if isinstance(spacing, torch.Tensor):
            spacing = spacing.detach().cpu().numpy()
        try:
            a = np.asarray(spacing, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"spacing must be a number, a sequence of {nd} numbers or a (B, {nd}) array, got "
                            f"{spacing!r}") from e
        if a.ndim == 0:
            rows = np.full((batch, nd), float(a))
        elif a.ndim == 1 and a.shape[0] == nd:
            rows = np.broadcast_to(a, (batch, nd))
        elif a.ndim == 2 and a.shape == (batch, nd):
            rows = a
        else:
            raise ValueError(f"spacing must be a number, a sequence of {nd} numbers (per call) or a (B={batch}, "
                             f"{nd}) nested sequence (per batch item), got shape {a.shape}")
    if not np.all(np.isfinite(rows)) or np.any(rows <= 0):
        raise ValueError(f"spacing must be positive and finite, got {np.asarray(rows).tolist()}")
    return [tuple(float(v) for v in r) for r in rows]


def _check_options(convention, empty):
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if empty is None:
        empty = "nan" if convention == "monai" else "paper"
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES} (or None for the convention's default), got "
                         f"{empty!r}")
    return empty


# ----------------------------------------------------------------------------------------------------------------
# morphology (on the device)

def _boundary_into(m: torch.Tensor, nd: int, border: bool, full: bool, out: torch.Tensor) -> None:
    """``out = m and not erode(m)`` for boolean ``m`` ``(..., *box)`` (any strides), written into the contiguous
    bool ``out`` of the same shape.

    The erosion's element is the cross (face neighbours) or, with ``full``, the 3^d box (applied as separable 1-D
    erosions); ``border`` is the value assumed outside ``m``.  ``m`` is copied once into a uint8 buffer padded by
    one voxel of ``border`` on every side, so that every neighbour is a flat offset and each step is one
    contiguous, vectorised AND.  Offsets that wrap across a row land on padding (or, for the padded faces of the
    current axis, on values no interior voxel reads later), so the interior is exact."""
    lead = m.shape[:m.ndim - nd]
    padded = tuple(lead) + tuple(n + 2 for n in m.shape[m.ndim - nd:])
    buf = torch.full(padded, int(border), dtype=torch.uint8, device=m.device)
    inner = (Ellipsis,) + (slice(1, -1),) * nd
    buf[inner] = m
    f = buf.view(-1)
    er = f.clone()
    for st in buf.stride()[buf.ndim - nd:]:
        src = er.clone() if full else f
        er[st:].bitwise_and_(src[:-st])
        er[:-st].bitwise_and_(src[st:])
    er.bitwise_xor_(f)
    out.copy_(er.view(padded)[inner])


def _edges_monai_into(m, nd, out):
    """``m xor binary_erosion(m)`` with scipy's default cross element and ``border_value=0`` (MONAI's edges)."""
    _boundary_into(m, nd, False, False, out)


def _label_contour_into(m, nd, out):
    """ITK ``LabelContour`` (fullyConnected=False): object voxels with a face neighbour in the background; the
    image border is not background."""
    _boundary_into(m, nd, True, False, out)


def _maurer_contour_into(m, nd, out):
    """Sites of ITK ``SignedMaurerDistanceMap``: object voxels with a background voxel among their 8 / 26
    neighbours; the image border is not background."""
    _boundary_into(m, nd, True, True, out)


def _count(m: torch.Tensor, nd: int) -> torch.Tensor:
    return m.flatten(m.ndim - nd).sum(-1)


# ----------------------------------------------------------------------------------------------------------------
# distances

def _crop_box(p: torch.Tensor, t: torch.Tensor, nd: int):
    """Slices of the bounding box of ``p | t`` over every leading index, grown by one voxel (within the image), or
    None when both are empty everywhere.

    Every query and every site lies in the foreground, so distances between them do not change when the volume
    is cropped to this common box.  The one-voxel margin is background wherever the box does not reach the image
    border, so edges and contours computed on the crop equal those of the full image (whatever value is assumed
    outside the crop), while at a real image border the convention's border rule still applies."""
    shape = tuple(p.shape[p.ndim - nd:])
    if p.numel() == 0:
        return None
    fg = (p | t).reshape((-1,) + shape).view(torch.uint8)
    # per-axis projections with reductions over contiguous trailing blocks (fast) rather than strided ones
    inner = fg.reshape(-1, shape[-1])                      # rows of the last axis
    proj = [None] * nd
    proj[nd - 1] = inner.amax(0)
    rows = inner.amax(1).view((-1,) + shape[:-1])          # (L, n0[, n1])
    if nd == 3:
        proj[1] = rows.reshape(-1, shape[1]).amax(0)
        rows = rows.amax(2)
    proj[0] = rows.amax(0)
    if not bool(proj[0].any()):
        return None
    box = []
    for d in range(nd):
        idx = torch.nonzero(proj[d]).flatten()
        box.append(slice(max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, shape[d])))
    return (Ellipsis,) + tuple(box)


def _distance_maps(sites: torch.Tensor, spacings, nd: int) -> torch.Tensor:
    """EDT of ``sites`` ``(2, B, C, *box)``, one batched engine call per distinct spacing."""
    groups: dict[tuple[float, ...], list[int]] = {}
    for b, sp in enumerate(spacings):
        groups.setdefault(sp, []).append(b)
    if len(groups) == 1:
        return distance_to_sites(sites, spacings[0], spatial_dims=nd)
    out = torch.empty(sites.shape, dtype=torch.float32, device=sites.device)
    for sp, items in groups.items():
        idx = torch.tensor(items, device=sites.device)
        out[:, idx] = distance_to_sites(sites[:, idx].contiguous(), sp, spatial_dims=nd)
    return out


def _distance_path() -> str:
    path = os.environ.get("FASTGSL_METRIC_DISTANCES", "auto")
    if path not in DISTANCE_PATHS:
        raise ValueError(f"FASTGSL_METRIC_DISTANCES must be one of {DISTANCE_PATHS}, got {path!r}")
    return path


def _sparse_distances(idx, partner, queries, sites, spacings, nd, solid):
    """The distances of the query voxels (flat indices ``idx`` into ``queries``; ``partner``: the same voxels in
    the other direction's half) through the k-d tree of :mod:`fastgsl.ops.nearest`, or None for the dense EDT.

    ``solid``: the sites are whole masks (``"paper"`` HD).  A query inside the other mask is then at 0, and for
    any other query the nearest voxel of that mask lies on its ``LabelContour`` (from the nearest voxel, a
    step towards the query along any axis where they differ stays in the image and gets strictly nearer, so it
    leaves the mask: the nearest voxel has a face neighbour outside), so only the outside queries are searched,
    against the contours.

    The dense EDT costs about the box volume (both maps), the k-d tree about ``searched queries x log2(sites
    per tree)``; ``auto`` takes the cheaper on the CPU (``_SPARSE_COST``, one search step against one voxel of
    the dense EDT, was measured on the benchmark's workloads) and always the dense EDT on a GPU.  Both give the
    same distances (bit-identical with unit or dyadic spacing)."""
    path = _distance_path()
    if path == "dense" or queries.device.type != "cpu" or idx.numel() == 0:
        return None
    search, outside = idx, None
    if solid:
        outside = ~sites.view(-1)[partner]
        search = idx[outside]
    if path == "auto":
        per_query = math.log2(idx.numel() / 2 + 2)  # a rough log2 of the tree size, as calibrated
        if search.numel() * per_query * _SPARSE_COST > queries.numel():
            return None
    if solid:
        sites = torch.empty_like(sites)
        _label_contour_into(queries[0], nd, sites[0])
        _label_contour_into(queries[1], nd, sites[1])
    sidx = idx if sites is queries else torch.nonzero(sites.view(-1)).flatten()
    if sidx.numel() > _MAX_TREE:  # the tree indexes its points with 32 bits
        return None
    B, C = queries.shape[1:3]
    bc = torch.arange(B * C)
    site_of = torch.cat([bc + B * C, bc])
    sp = torch.tensor(spacings, dtype=torch.float64).repeat_interleave(C, 0).repeat(2, 1)
    found = nearest.segment_distances(search, sidx, site_of, tuple(queries.shape[3:]), sp)
    if found is None or not solid:
        return found
    values = torch.zeros(idx.numel(), dtype=torch.float32)
    values[outside] = found
    return values


class _Sets:
    """The directed distance sets of every (item, class), concatenated: ``values`` (float32) in segments
    ``seg = direction * B * C + item * C + class`` (direction 0: pred -> target), sorted by segment, with
    ``counts`` per segment.  ``present_p``/``present_t`` (B, C) say which masks count as present."""

    def __init__(self, values, seg, counts, present_p, present_t):
        self.values, self.seg, self.counts = values, seg, counts
        self.present_p, self.present_t = present_p, present_t


def _directed_sets(p, t, nd, spacings, convention, kind) -> _Sets | None:
    """None when no item has any foreground."""
    B, C = p.shape[:2]
    box = _crop_box(p, t, nd)
    if box is None:
        return None
    p, t = p[box], t[box]
    shape = (2,) + tuple(p.shape)
    queries = torch.empty(shape, dtype=torch.bool, device=p.device)
    if convention == "monai":
        _edges_monai_into(p, nd, queries[0])
        _edges_monai_into(t, nd, queries[1])
        sites = queries
    elif kind == "hd":
        queries[0], queries[1] = p, t
        sites = queries
    else:
        _label_contour_into(p, nd, queries[0])
        _label_contour_into(t, nd, queries[1])
        sites = torch.empty(shape, dtype=torch.bool, device=p.device)
        _maurer_contour_into(p, nd, sites[0])
        _maurer_contour_into(t, nd, sites[1])
    # direction 0 (pred's queries) measures against the target's sites and vice versa
    half = queries[0].numel()
    idx = torch.nonzero(queries.view(-1)).flatten()
    seg = idx // (half // (B * C)) if B * C else idx
    partner = torch.where(idx < half, idx + half, idx - half)
    global last_distance_path
    values = _sparse_distances(idx, partner, queries, sites, spacings, nd,
                               solid=convention == "paper" and kind == "hd")
    last_distance_path = "dense" if values is None else "sparse"
    if values is None:
        dist = _distance_maps(sites, spacings, nd)  # dist[0]: to pred's sites, dist[1]: to target's sites
        values = dist.view(-1)[partner]
    counts = torch.bincount(seg, minlength=2 * B * C)
    # every query lies in its mask and every nonempty mask has one, except that a full mask has no LabelContour
    present = (counts > 0).view(2, B, C)
    return _Sets(values, seg, counts, present[0], present[1])


def _segment_max(sets: _Sets) -> torch.Tensor:
    out = torch.full((sets.counts.numel(),), float("-inf"), dtype=torch.float32, device=sets.values.device)
    return out.scatter_reduce(0, sets.seg, sets.values, reduce="amax", include_self=True).to(torch.float64)


def _segment_sum(sets: _Sets) -> torch.Tensor:
    """float64 sums per segment from one cumulative sum (a fixed-order scan, hence deterministic on every
    device, unlike atomics)."""
    v = sets.values.to(torch.float64)
    inf = torch.isinf(v)  # +inf where the other mask is absent: kept out of the scan (inf - inf would be nan)
    cs = torch.cat([v.new_zeros(1), torch.where(inf, 0.0, v).cumsum(0)])
    ends = sets.counts.cumsum(0)
    total = cs[ends] - cs[ends - sets.counts]
    n_inf = torch.bincount(sets.seg[inf], minlength=sets.counts.numel())
    return torch.where(n_inf > 0, float("inf"), total)


def segment_quantile(values: torch.Tensor, counts: torch.Tensor, q: float,
                     seg: torch.Tensor | None = None) -> torch.Tensor:
    """Linear-interpolated ``q``-quantile (numpy's default ``method="linear"``) of each of consecutive segments of
    ``values`` (non-negative float32, +inf allowed), segment ``s`` holding ``counts[s]`` values.  Returns float64
    per segment, nan for empty segments.  ``seg`` (optional) is the segment index of every value.

    No sort: the ``floor(r)``-th order statistic is found by a radix selection on the IEEE bits (monotone for
    non-negative floats), 11 + 10 + 10 bits in three passes, the histograms counted with ``bincount`` (integer,
    so deterministic on every device); the next order statistic is
    either a tie (counted) or the segment minimum above it.  Exact and deterministic."""
    if values.dtype != torch.float32:
        raise TypeError(f"values must be float32, got {values.dtype}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    dev = values.device
    counts = counts.to(device=dev, dtype=torch.int64)
    S = counts.numel()
    out = torch.full((S,), float("nan"), dtype=torch.float64, device=dev)
    if S == 0 or values.numel() == 0:
        return out
    if seg is None:
        seg = torch.repeat_interleave(torch.arange(S, device=dev), counts)
    rank = (counts - 1).clamp(min=0).to(torch.float64) * q
    k = rank.floor().to(torch.int64)
    w = rank - k.to(torch.float64)
    bits = values.view(torch.int32).to(torch.int64)
    v_lo = _radix_select(bits, seg, k, S).view(torch.float32)
    # next order statistic: equal to v_lo when v_lo is repeated past position k, else the smallest value above it
    le = values <= v_lo[seg]
    n_le = torch.bincount(seg[le], minlength=S)
    above = torch.full((S,), float("inf"), dtype=torch.float32, device=dev)
    gt = ~le
    above = above.scatter_reduce(0, seg[gt], values[gt], reduce="amin", include_self=True)
    v_hi = torch.where(n_le >= k + 2, v_lo, above)
    lo, hi = v_lo.to(torch.float64), v_hi.to(torch.float64)
    interp = torch.where((w > 0) & (hi != lo), lo + w * (hi - lo), lo)
    return torch.where(counts > 0, interp, out)


# (shift, width) of the digits of a non-negative float32's 31 value bits, most significant first
_DIGITS = ((20, 11), (10, 10), (0, 10))


def _radix_select(bits: torch.Tensor, seg: torch.Tensor, k: torch.Tensor, S: int) -> torch.Tensor:
    """The ``k[s]``-th smallest (0-based) of the non-negative int32-valued ``bits`` (as int64) of each segment,
    as int32.  Three passes; each histograms one digit of the candidates still sharing the chosen prefix."""
    prefix = torch.zeros(S, dtype=torch.int64, device=bits.device)
    k = k.clone()
    for i, (shift, width) in enumerate(_DIGITS):
        if i:  # keep only the candidates that share the prefix chosen so far
            keep = (bits >> (shift + width)) == prefix[seg]
            bits, seg = bits[keep], seg[keep]
        nb = 1 << width
        digit = (bits >> shift) & (nb - 1)
        cum = torch.bincount(seg * nb + digit, minlength=S * nb).view(S, nb).cumsum(1)
        d = (cum <= k[:, None]).sum(1).clamp(max=nb - 1)
        below = torch.where(d > 0, cum.gather(1, (d - 1).clamp(min=0)[:, None])[:, 0], 0)
        k = k - below
        prefix = (prefix << width) + d
    return prefix.to(torch.int32)


def _apply_policy(value, present_p, present_t, empty, both_nan, one_nan, both_paper, one_paper):
    """Overwrite the (B, C) float64 ``value`` where pred and/or target are absent."""
    both = ~present_p & ~present_t
    one = present_p ^ present_t
    if empty == "nan":
        b, o = both_nan, one_nan
    else:
        b, o = both_paper, one_paper
    value = torch.where(both, torch.as_tensor(b, dtype=torch.float64, device=value.device), value)
    return torch.where(one, o if isinstance(o, torch.Tensor) else torch.as_tensor(o, dtype=torch.float64,
                                                                                  device=value.device), value)


def _all_absent(B, C, device, empty, nan_value, paper_value) -> torch.Tensor:
    value = nan_value if empty == "nan" else paper_value
    return torch.full((B, C), value, dtype=torch.float32, device=device)


def _diagonals(spacings, shape, device) -> torch.Tensor:
    diag = [math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))) for sp in spacings]
    return torch.tensor(diag, dtype=torch.float64, device=device)[:, None]


# ----------------------------------------------------------------------------------------------------------------
# public API

def dice_score(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
               include_background: bool = False, convention: str = "monai", empty: str | None = None,
               spatial_dims: int | None = None) -> torch.Tensor:
    """Dice coefficient ``2 |P n T| / (|P| + |T|)`` per (item, class), ``(B, C')`` float32.

    Args:
        pred, target: binary masks ``(B, C, *spatial)`` or, with ``num_classes``, integer label maps.
        num_classes: number of labels of a label map (classes ``0 .. num_classes - 1``).
        include_background: keep channel / label 0.
        convention: ``"monai"`` or ``"paper"``; only selects the default ``empty`` policy (the formula is shared
            by MONAI ``compute_dice`` and SimpleITK ``LabelOverlapMeasuresImageFilter``).
        empty: ``"nan"``: nan whenever the target is empty (MONAI ``ignore_empty=True``); ``"paper"``: 1 when both
            are empty (SimpleITK reports inf there), 0 when only one is.
        spatial_dims: 2 or 3, only needed for ``(B, 1, H, W)`` label maps (default: 3-D when ambiguous).
    """
    empty = _check_options(convention, empty)
    p, t, nd = _prepare(pred, target, num_classes, include_background, spatial_dims)
    inter = _count(p & t, nd).to(torch.float64)
    sp, st = _count(p, nd).to(torch.float64), _count(t, nd).to(torch.float64)
    denom = sp + st
    dice = 2.0 * inter / denom.clamp(min=1)
    if empty == "nan":
        dice = torch.where(st > 0, dice, torch.full_like(dice, float("nan")))
    else:
        dice = torch.where(denom > 0, dice, torch.ones_like(dice))
    return dice.to(torch.float32)


def hausdorff_distance(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
                       spacing=None, include_background: bool = False, percentile: float | None = None,
                       directed: bool = False, convention: str = "monai", empty: str | None = None,
                       spatial_dims: int | None = None) -> torch.Tensor:
    """Hausdorff distance, or its ``percentile`` variant (HD95 with ``percentile=95``), ``(B, C')`` float32.

    ``HD = max(Q(D(P->T)), Q(D(T->P)))`` (``directed=True``: ``Q(D(P->T))``), where ``Q`` is the maximum or the
    linear-interpolated percentile and the directed distance sets ``D`` follow ``convention`` (module docstring:
    edge voxels for ``"monai"``, all foreground voxels against the other mask's clamped signed Maurer map for
    ``"paper"``).

    Args:
        pred, target: binary masks ``(B, C, *spatial)`` or, with ``num_classes``, integer label maps.
        num_classes: number of labels of a label map.
        spacing: voxel size (module docstring), per call or per batch item; distances are in its units.
        include_background: keep channel / label 0.
        percentile: None for the maximum, or a number in [0, 100].
        directed: only the pred -> target direction.
        convention: ``"monai"`` or ``"paper"``.
        empty: ``"nan"`` (both absent: nan, one absent: +inf) or ``"paper"`` (0 / image diagonal); default
            ``"nan"`` for ``"monai"`` and ``"paper"`` for ``"paper"``.
        spatial_dims: 2 or 3, only needed for ``(B, 1, H, W)`` label maps.
    """
    empty = _check_options(convention, empty)
    if percentile is not None:
        if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) \
                or not 0 <= float(percentile) <= 100:
            raise ValueError(f"percentile must be None or a number in [0, 100], got {percentile!r}")
    p, t, nd = _prepare(pred, target, num_classes, include_background, spatial_dims)
    spacings = _spacings(spacing, p.shape[0], nd)
    B, C = p.shape[:2]
    sets = _directed_sets(p, t, nd, spacings, convention, "hd")
    if sets is None:
        return _all_absent(B, C, p.device, empty, float("nan"), 0.0)
    if percentile is None or float(percentile) == 100.0:
        per_dir = _segment_max(sets)
    else:
        per_dir = segment_quantile(sets.values, sets.counts, float(percentile) / 100.0, sets.seg)
    per_dir = per_dir.view(2, B, C)
    hd = per_dir[0] if directed else torch.maximum(per_dir[0], per_dir[1])
    hd = _apply_policy(hd, sets.present_p, sets.present_t, empty, float("nan"), float("inf"), 0.0,
                       _diagonals(spacings, p.shape[2:], p.device).expand(B, C))
    return hd.to(torch.float32)


def average_surface_distance(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
                             spacing=None, include_background: bool = False, symmetric: bool = True,
                             convention: str = "monai", empty: str | None = None,
                             spatial_dims: int | None = None) -> torch.Tensor:
    """Average surface distance, ``(B, C')`` float32.

    ``"monai"``: ``(sum D(P->T) + sum D(T->P)) / (|D(P->T)| + |D(T->P)|)`` over edge voxels;
    ``"paper"``: ``(mean D(P->T) + mean D(T->P)) / 2`` over ``LabelContour`` voxels with the other mask's
    ``|SignedMaurer|``.  ``symmetric=False``: ``mean D(P->T)`` in either convention.

    Args: as :func:`hausdorff_distance`, with ``symmetric`` in place of ``percentile``/``directed``.  For
    ``"paper"`` a full mask has no contour and counts as absent under the ``empty`` policy.
    """
    empty = _check_options(convention, empty)
    p, t, nd = _prepare(pred, target, num_classes, include_background, spatial_dims)
    spacings = _spacings(spacing, p.shape[0], nd)
    B, C = p.shape[:2]
    sets = _directed_sets(p, t, nd, spacings, convention, "asd")
    if sets is None:
        return _all_absent(B, C, p.device, empty, float("nan"), 0.0)
    s, n = _segment_sum(sets).view(2, B, C), sets.counts.view(2, B, C).to(torch.float64)
    if not symmetric:
        asd = s[0] / n[0]
    elif convention == "monai":
        asd = (s[0] + s[1]) / (n[0] + n[1])
    else:
        asd = 0.5 * (s[0] / n[0] + s[1] / n[1])
    asd = _apply_policy(asd, sets.present_p, sets.present_t, empty, float("nan"), float("inf"), 0.0,
                        _diagonals(spacings, p.shape[2:], p.device).expand(B, C))
    return asd.to(torch.float32)


def surface_dice(pred: torch.Tensor, target: torch.Tensor, tolerance: float | Sequence[float],
                 num_classes: int | None = None, *, spacing=None, include_background: bool = False,
                 convention: str = "monai", empty: str | None = None,
                 spatial_dims: int | None = None) -> torch.Tensor:
    """Normalised surface Dice at ``tolerance`` (physical units), ``(B, C')`` float32.

    ``NSD = (|{d in D(P->T) : d <= tau_c}| + |{d in D(T->P) : d <= tau_c}|) / (|D(P->T)| + |D(T->P)|)``, counting
    boundary voxels (MONAI ``compute_surface_dice(use_subvoxels=False)``).  The paper reports no surface Dice;
    ``"paper"`` is fastgsl's analogue on the paper's surfaces: ``LabelContour`` voxels against the other mask's
    ``|SignedMaurer|``, as its ASD.

    Args:
        tolerance: ``tau``, one number for every class or one per output class (``C'`` of them), finite, >= 0.
        empty: ``"nan"``: both absent -> nan, one absent -> 0 (MONAI); ``"paper"``: both absent -> 1, one -> 0.
        others: as :func:`hausdorff_distance`.
    """
    empty = _check_options(convention, empty)
    p, t, nd = _prepare(pred, target, num_classes, include_background, spatial_dims)
    B, C = p.shape[:2]
    if isinstance(tolerance, torch.Tensor):
        tolerance = tolerance.detach().cpu().numpy()
    tol = np.asarray(tolerance, dtype=np.float64).reshape(-1)
    if tol.size == 1:
        tol = np.repeat(tol, C)
    if tol.size != C:
        raise ValueError(f"tolerance needs one value or one per output class ({C}), got {tol.size}")
    if not np.all(np.isfinite(tol)) or np.any(tol < 0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tol.tolist()}")
    spacings = _spacings(spacing, B, nd)
    sets = _directed_sets(p, t, nd, spacings, convention, "nsd")
    if sets is None:
        return _all_absent(B, C, p.device, empty, float("nan"), 1.0)
    # compare in float32 like MONAI (float32 distances against the threshold)
    tau = torch.tensor(tol, dtype=torch.float32, device=p.device)
    good = torch.bincount(sets.seg[sets.values <= tau[sets.seg % C]], minlength=2 * B * C).view(2, B, C)
    n = sets.counts.view(2, B, C)
    nsd = (good[0] + good[1]).to(torch.float64) / (n[0] + n[1]).clamp(min=1).to(torch.float64)
    nsd = _apply_policy(nsd, sets.present_p, sets.present_t, empty, float("nan"), 0.0, 1.0, 0.0)
    return nsd.to(torch.float32)


__all__ = ["dice_score", "hausdorff_distance", "average_surface_distance", "surface_dice", "segment_quantile",
           "CONVENTIONS", "EMPTY_POLICIES"]
