"""The directed distance sets of a batch: the query voxels of each mask and their distances to the other mask's
sites, for every (item, class) at once, with the per-set reductions the metrics take of them.

The distances come either from the dense EDT of the sites (:func:`fastgsl.ops.edt.distance_to_sites`, one batched
call per distinct spacing) or, on the CPU, from the k-d tree of :mod:`fastgsl.ops.nearest`, which measures only the
query voxels.  ``FASTGSL_METRIC_DISTANCES`` (:data:`DISTANCE_PATHS`) chooses: ``auto`` (default) takes the dense
EDT on a GPU and the cheaper of the two on the CPU, ``dense`` and ``sparse`` force one.  Each computation reports
the path that answered to :func:`fastgsl.observe.note` as ``"metric_distances"``.

On the CPU (:func:`host_sets`) the query and site voxels come as sorted index lists from the host library's
row pass (:func:`fastgsl.ops.nearest.surface_voxels`); elsewhere, and where that library is unavailable, from
the tensor morphology of :mod:`.morphology` on the common bounding box (:func:`crop_box`).
"""
from __future__ import annotations

import math
import os

import torch

from fastgsl import observe
from fastgsl.ops import nearest, workspace
from fastgsl.ops.edt import distance_to_sites
from fastgsl.validation import check_choice

from .morphology import edges_into, label_contour_into, maurer_contour_into
from .selection import order_rank, segment_quantile

#: ``FASTGSL_METRIC_DISTANCES``: how the query voxels get their distances (``auto``: the cheaper one)
DISTANCE_PATHS = ("auto", "dense", "sparse")
#: cost of one k-d tree query step relative to one voxel of the dense EDT (both maps, with the site map it is built
#: from), measured on the CPU (the benchmark's folded workload, where the two paths are closest: with this cost the
#: model takes the tree, which was 0.7-0.9x the dense EDT's time there in either convention)
_SPARSE_COST = 0.5
#: cost of one stencil row of a surface Dice query (:func:`fastgsl.ops.nearest.within_rows`) in the same unit
_ROW_COST = 0.3
_MAX_TREE = 2 ** 31 - 1


def crop_box(p: torch.Tensor, t: torch.Tensor, nd: int):
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


def distance_maps(sites: torch.Tensor, spacings, nd: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """EDT of ``sites`` ``(2, B, C, *box)``, one batched engine call per distinct spacing (into ``out`` where
    given, with a single spacing)."""
    groups: dict[tuple[float, ...], list[int]] = {}
    for b, sp in enumerate(spacings):
        groups.setdefault(sp, []).append(b)
    if len(groups) == 1:
        return distance_to_sites(sites, spacings[0], spatial_dims=nd, out=out)
    out = torch.empty(sites.shape, dtype=torch.float32, device=sites.device)
    for sp, items in groups.items():
        idx = torch.tensor(items, device=sites.device)
        out[:, idx] = distance_to_sites(sites[:, idx].contiguous(), sp, spatial_dims=nd)
    return out


def distance_path() -> str:
    """``FASTGSL_METRIC_DISTANCES``, checked (default ``auto``)."""
    return check_choice("FASTGSL_METRIC_DISTANCES", os.environ.get("FASTGSL_METRIC_DISTANCES", "auto"),
                        DISTANCE_PATHS)


def sparse_distances(idx, partner, queries, sites, spacings, nd, over_foreground):
    """The distances of the query voxels (flat indices ``idx`` into ``queries``; ``partner``: the same voxels in
    the other direction's half) through the k-d tree of :mod:`fastgsl.ops.nearest`, or None for the dense EDT.

    ``over_foreground``: the queries are all foreground voxels and the sites the whole other mask (``"paper"``
    HD).  A query inside the other mask is then at 0, and for any other query the nearest voxel of that mask lies
    on its ``LabelContour`` (from the nearest voxel, a step towards the query along any axis where they differ
    stays in the image and gets strictly nearer, so it leaves the mask: the nearest voxel has a face neighbour
    outside), so only the outside queries are searched, against the contours.

    The dense EDT costs about the box volume (both maps), the k-d tree about ``searched queries x log2(sites
    per tree)``; ``auto`` takes the cheaper on the CPU (``_SPARSE_COST``, one search step against one voxel of
    the dense EDT, was measured on the benchmark's workloads) and always the dense EDT on a GPU.  Both give the
    same distances (bit-identical with unit or dyadic spacing)."""
    path = distance_path()
    if path == "dense" or queries.device.type != "cpu" or idx.numel() == 0:
        return None
    search, outside = idx, None
    if over_foreground:
        outside = ~sites.view(-1)[partner]
        search = idx[outside]
    if path == "auto":
        per_query = math.log2(idx.numel() / 2 + 2)  # a rough log2 of the tree size, as calibrated
        if search.numel() * per_query * _SPARSE_COST > queries.numel():
            return None
    if over_foreground:
        sites = torch.empty_like(sites)
        label_contour_into(queries[0], nd, sites[0])
        label_contour_into(queries[1], nd, sites[1])
    sidx = idx if sites is queries else torch.nonzero(sites.view(-1)).flatten()
    if sidx.numel() > _MAX_TREE:  # the tree indexes its points with 32 bits
        return None
    B, C = queries.shape[1:3]
    bc = torch.arange(B * C)
    site_of = torch.cat([bc + B * C, bc])
    sp = torch.tensor(spacings, dtype=torch.float64).repeat_interleave(C, 0).repeat(2, 1)
    found = nearest.segment_distances(search, sidx, site_of, tuple(queries.shape[3:]), sp)
    if found is None or not over_foreground:
        return found
    values = torch.zeros(idx.numel(), dtype=torch.float32)
    values[outside] = found
    return values


def _segment_counts(flags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """int64 number of true ``flags`` in each of the consecutive segments of ``lengths``, from one cumulative
    sum."""
    cs = torch.cat([lengths.new_zeros(1), flags.to(torch.int64).cumsum(0)])
    ends = lengths.cumsum(0)
    return cs[ends] - cs[ends - lengths]


class DistanceSets:
    """The directed distance sets of every (item, class), concatenated: ``values`` (float32) in segments
    ``seg = direction * B * C + item * C + class`` (direction 0: pred -> target), sorted by segment, with
    ``counts`` per segment.  ``zeros`` (optional, per segment): more members equal to 0 that are not stored in
    ``values`` (the ``"paper"`` HD's queries inside the other mask); ``counts`` includes them.
    ``present_p``/``present_t`` (B, C) say which masks count as present."""

    def __init__(self, values, seg, counts, present_p, present_t, zeros=None):
        self.values, self._seg, self.counts = values, seg, counts
        self.present_p, self.present_t = present_p, present_t
        self.zeros = zeros
        #: how many members of each segment ``values`` stores
        self.stored = counts if zeros is None else counts - zeros

    @property
    def seg(self) -> torch.Tensor:
        """The segment of every stored value (built on first use where the caller gave only the counts)."""
        if self._seg is None:
            self._seg = torch.repeat_interleave(torch.arange(self.counts.numel(), device=self.values.device),
                                                self.stored)
        return self._seg

    def maximum(self) -> torch.Tensor:
        """float64 maximum per segment (-inf for an empty one)."""
        out = torch.segment_reduce(self.values, "max", lengths=self.stored, initial=float("-inf"))
        if self.zeros is not None:
            out = torch.where(self.zeros > 0, out.clamp(min=0.0), out)
        return out.to(torch.float64)

    def quantile(self, q: float) -> torch.Tensor:
        """float64 linear-interpolated ``q``-quantile per segment (:func:`segment_quantile`)."""
        seg = self._seg if self.values.device.type == "cpu" else self.seg  # the CPU selection reads slices
        return segment_quantile(self.values, self.stored, q, seg, zeros=self.zeros)

    def total(self) -> torch.Tensor:
        """float64 sums per segment, in a fixed order (hence deterministic, unlike atomics): on the CPU one
        sequential sum per segment, elsewhere from one cumulative sum; the unstored zeros add nothing."""
        v = self.values.to(torch.float64)
        if v.device.type == "cpu":  # +inf (the other mask absent) sums to +inf
            return torch.segment_reduce(v, "sum", lengths=self.stored, initial=0.0)
        inf = torch.isinf(v)  # +inf where the other mask is absent: kept out of the scan (inf - inf would be nan)
        cs = torch.cat([v.new_zeros(1), torch.where(inf, 0.0, v).cumsum(0)])
        ends = self.stored.cumsum(0)
        total = cs[ends] - cs[ends - self.stored]
        n_inf = _segment_counts(inf, self.stored)
        return torch.where(n_inf > 0, float("inf"), total)

    def within(self, tau: torch.Tensor) -> torch.Tensor:
        """int64 count per segment of the members ``<= tau[s % C]`` (``tau``: float32 per class), zeros included."""
        C = tau.numel()
        S = self.counts.numel()
        if bool((tau == tau[0]).all()):  # one tolerance: no per-value threshold needed
            good = _segment_counts(self.values <= tau[0], self.stored)
        else:
            good = torch.bincount(self.seg[self.values <= tau[self.seg % C]], minlength=S)
        if self.zeros is not None:
            good = good + self.zeros  # 0 <= tau: every zero is within
        return good


def host_sets(p, t, nd, spacings, convention, over_foreground, need=None):
    """:func:`directed_sets` on the CPU from the voxel lists of :func:`fastgsl.ops.nearest.surface_voxels`, which
    never builds a volume but the dense path's site map (on the bounding box of what was found); NotImplemented
    when the host library is unavailable.

    The ``"paper"`` HD (``over_foreground``) stores only the queries outside the other mask; those inside are at
    distance 0 and only counted (``DistanceSets.zeros``).  For the others the nearest voxel of the other mask lies
    on its ``LabelContour`` (:func:`sparse_distances`), which are then the sites of both paths.

    ``need`` (:func:`directed_sets`) lets the k-d tree search less: ``"maximum"`` ends a query's search once it
    cannot raise its segment's maximum, ``("quantile", q)`` once its value lies below a limit under the order
    statistics that quantile reads (:func:`_quantile_values`), a float32 ``(C,)`` tolerance ends it at the first
    site within (or, for a small tolerance, scans only the few rows of sites within it:
    :func:`fastgsl.ops.nearest.within_rows`, which the cost model then counts instead of the tree's depth).  Only
    that reduction of the values is then exact."""
    if p.numel() == 0:
        return None
    modes = ("outside", "contour") if over_foreground else ("edge",) if convention == "monai" else ("contour", "maurer")
    found = nearest.surface_voxels(p, t, nd, modes)
    if found is None:
        return NotImplemented
    lists, per_volume, zeros, box = found
    queries, sites = lists[0], lists[-1]
    B, C = p.shape[:2]
    shape = tuple(p.shape[2:])
    total = queries.numel() + (int(zeros.sum()) if zeros is not None else 0)
    if total == 0:  # no query anywhere: every mask absent (or, for contours, full)
        return None
    n_found = per_volume[0]
    seg = None  # DistanceSets builds it only if a reduction needs it
    counts = n_found if zeros is None else n_found + zeros
    values = None
    path = distance_path()
    if queries.numel() == 0:
        values = torch.empty(0, dtype=torch.float32)
    elif path != "dense" and sites.numel() <= _MAX_TREE:
        ext = [hi - lo + 1 for lo, hi in box]
        per_query = math.log2(total / 2 + 2)  # a rough log2 of the tree size, as calibrated
        if isinstance(need, torch.Tensor):
            rows = [nearest.within_rows(shape, sp, tau) for sp in set(spacings) for tau in set(need.tolist())]
            if all(r is not None for r in rows):  # every segment scans a few rows of sites, no tree
                per_query = max(rows) * _ROW_COST / _SPARSE_COST
        if path == "sparse" or queries.numel() * per_query * _SPARSE_COST <= 2 * B * C * math.prod(ext):
            bc = torch.arange(B * C)
            site_of = torch.cat([bc + B * C, bc])
            sp = torch.tensor(spacings, dtype=torch.float64).repeat_interleave(C, 0).repeat(2, 1)
            if need is None or isinstance(need, str):
                values = nearest.segment_distances(queries, sites, site_of, shape, sp, n_found, per_volume[-1],
                                                   goal=need or "distances")
            elif isinstance(need, tuple):
                values = _quantile_values(queries, sites, site_of, shape, sp, n_found, per_volume[-1], zeros,
                                          need[1])
            else:
                values = nearest.segment_distances(queries, sites, site_of, shape, sp, n_found, per_volume[-1],
                                                   goal="within", tau=need.repeat(2 * B))
    observe.note("metric_distances", "dense" if values is None else "sparse")
    if values is None:
        values = _dense_values(queries, sites, box, B, C, shape, spacings, nd)
    present = (counts > 0).view(2, B, C)
    return DistanceSets(values, seg, counts, present[0], present[1], zeros)


def _quantile_values(queries, sites, site_of, shape, sp, stored, site_counts, zeros, q):
    """The k-d tree's distances where only each segment's linear-interpolated ``q``-quantile will be read: exact
    from the lower order statistic of :func:`segment_quantile` on, and for the others at most the limit ``T`` of
    ``goal="quantile"`` (:func:`fastgsl.ops.nearest.segment_distances`).  That holds where at most ``rank`` stored
    values (the lower order statistic's rank among them) came out ``<= T``, which is checked; a segment where it
    does not hold (the sample misjudged it) makes every distance exact instead.  Reports ``"metric_quantile"``:
    ``"limited"`` (some segment's values were limited) or ``"exact"`` (all are exact)."""
    S = stored.numel()
    n = stored if zeros is None else stored + zeros
    k, _ = order_rank(n, q)  # segment_quantile's lower order statistic
    rank = k if zeros is None else k - zeros
    rank = torch.where((rank >= 0) & (stored > 0), rank, -1)
    limit = torch.empty(S, dtype=torch.float32)
    values = nearest.segment_distances(queries, sites, site_of, shape, sp, stored, site_counts, goal="quantile",
                                       tau=limit, rank=rank)
    limited = limit >= 0
    if not bool(limited.any()):  # no segment was large enough to sample, or no quantile lies above its zeros
        observe.note("metric_quantile", "exact")
        return values
    n_below = _segment_counts(values <= torch.repeat_interleave(limit, stored), stored)
    if bool((limited & (n_below > rank)).any()):
        observe.note("metric_quantile", "exact")
        return nearest.segment_distances(queries, sites, site_of, shape, sp, stored, site_counts)
    observe.note("metric_quantile", "limited")
    return values


def _dense_values(queries, sites, box, B, C, shape, spacings, nd):
    """The distances of the query voxels (flat indices into ``(2, B, C, *shape)``) to the sites of the other
    direction, through the dense EDT of the sites on ``box`` (which holds every query and site, hence the
    nearest site of every query)."""
    ext = (2, B, C) + tuple(b - a + 1 for a, b in box)
    # scratch buffers (fastgsl.ops.workspace): read here only, never returned, so no page faults on repeated calls
    site_map = workspace.scratch("metric_sites", math.prod(ext), torch.bool).zero_().view(ext)
    site_map.view(-1)[nearest.to_box(sites, shape, box)] = True
    dist = workspace.scratch("metric_distances", site_map.numel(), torch.float32).view(ext)
    dist = distance_maps(site_map, spacings, nd, out=dist)  # dist[0]: to pred's sites, dist[1]: to target's
    return dist.view(-1)[nearest.to_box(queries, shape, box, swap_half=B * C)]


def directed_sets(p, t, nd, spacings, convention, over_foreground=False, need=None) -> DistanceSets | None:
    """The directed distance sets of the boolean masks ``p``, ``t`` ``(B, C, *spatial)``, or None when no item has
    any foreground.

    ``convention="monai"``: edge voxels against edge voxels; ``"paper"``: ``LabelContour`` voxels against the
    signed Maurer map's sites (its absolute value).  ``over_foreground`` (the ``"paper"`` HD) overrides both: all
    foreground voxels against the whole other mask (the signed map clamped at 0).

    ``need``: None (every reduction), ``"maximum"`` (only :meth:`DistanceSets.maximum` will be read),
    ``("quantile", q)`` (only :meth:`DistanceSets.quantile` of ``q``) or a float32 ``(C,)`` tensor of tolerances
    (only :meth:`DistanceSets.within` of it); the CPU's k-d tree then searches less (:func:`host_sets`)."""
    B, C = p.shape[:2]
    if p.device.type == "cpu":
        sets = host_sets(p, t, nd, spacings, convention, over_foreground, need)
        if sets is not NotImplemented:
            return sets
    box = crop_box(p, t, nd)
    if box is None:
        return None
    p, t = p[box], t[box]
    shape = (2,) + tuple(p.shape)
    queries = torch.empty(shape, dtype=torch.bool, device=p.device)
    if over_foreground:
        queries[0], queries[1] = p, t
        sites = queries
    elif convention == "monai":
        edges_into(p, nd, queries[0])
        edges_into(t, nd, queries[1])
        sites = queries
    else:
        label_contour_into(p, nd, queries[0])
        label_contour_into(t, nd, queries[1])
        sites = torch.empty(shape, dtype=torch.bool, device=p.device)
        maurer_contour_into(p, nd, sites[0])
        maurer_contour_into(t, nd, sites[1])
    # direction 0 (pred's queries) measures against the target's sites and vice versa
    half = queries[0].numel()
    idx = torch.nonzero(queries.view(-1)).flatten()
    seg = idx // (half // (B * C)) if B * C else idx
    partner = torch.where(idx < half, idx + half, idx - half)
    values = sparse_distances(idx, partner, queries, sites, spacings, nd, over_foreground)
    observe.note("metric_distances", "dense" if values is None else "sparse")
    if values is None:
        dist = distance_maps(sites, spacings, nd)  # dist[0]: to pred's sites, dist[1]: to target's sites
        values = dist.view(-1)[partner]
    counts = torch.bincount(seg, minlength=2 * B * C)
    # every query lies in its mask and every nonempty mask has one, except that a full mask has no LabelContour
    present = (counts > 0).view(2, B, C)
    return DistanceSets(values, seg, counts, present[0], present[1])


__all__ = ["DISTANCE_PATHS", "DistanceSets", "directed_sets", "crop_box", "distance_maps", "distance_path"]
