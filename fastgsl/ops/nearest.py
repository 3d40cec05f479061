"""Exact distances from sparse query voxels to the nearest voxel of a sparse site set, on the CPU.

The sparse counterpart of :func:`fastgsl.ops.edt.distance_to_sites` for when only a few voxels need a distance and the
sites are few too: the surface metrics' edge voxels.  A k-d tree per site set (``kernels/nearest_host.cpp``,
threads over queries) costs about ``(queries) x log(sites)`` where the dense EDT costs the box volume; on a CPU
that wins for surfaces (MONAI 1.6 made the same choice with scipy's cKDTree), while on a GPU the dense EDT stays
the fast path.  Results are the dense EDT's: the squared distance is accumulated with the same float64
operations in the same order, bit-identical with unit or dyadic spacing.

``segment_distances(queries, sites, site_of, shape, spacing)`` works on segments of a ``(S, *shape)`` grid,
given as sorted flat voxel indices: the queries of segment ``s`` are measured against the sites of segment
``site_of[s]``.  Returns None when the host library is unavailable (callers then use the dense EDT).
"""
from __future__ import annotations

import ctypes
import math

import torch

from fastgsl import _native
from fastgsl.kernels import manifest

_ABI_VERSION = 6
#: what :func:`segment_distances` must get right (``kernels/nearest_host.cpp`` states each)
GOALS = {"distances": 0, "maximum": 1, "within": 2, "quantile": 3}
#: the surfaces :func:`surface_voxels` extracts (``kernels/surface_voxels.h`` states each rule)
SURFACE_MODES = {"edge": 0, "contour": 1, "maurer": 2, "outside": 3}


def _bind(lib: ctypes.CDLL):
    vp = ctypes.c_void_p
    lib.fastgsl_nearest_distances.argtypes = [vp, vp, vp, vp, vp, ctypes.c_longlong, ctypes.c_int, vp, vp, vp,
                                              ctypes.c_int, ctypes.c_int, vp, vp]
    lib.fastgsl_nearest_distances.restype = ctypes.c_int
    lib.fastgsl_surface_extract.argtypes = [vp, vp, vp, ctypes.c_longlong, ctypes.c_int, vp, vp, vp, ctypes.c_int, vp,
                                            vp, ctypes.c_int]
    lib.fastgsl_surface_extract.restype = vp
    lib.fastgsl_surface_collect.argtypes = [vp, vp, vp, vp, ctypes.c_longlong]
    lib.fastgsl_surface_collect.restype = None
    lib.fastgsl_surface_to_box.argtypes = [vp, ctypes.c_longlong, vp, vp, vp, ctypes.c_longlong, ctypes.c_int, vp,
                                           ctypes.c_int]
    lib.fastgsl_surface_to_box.restype = None
    lib.fastgsl_segment_select.argtypes = [vp, vp, ctypes.c_longlong, vp, vp, vp, ctypes.c_int]
    lib.fastgsl_segment_select.restype = ctypes.c_int
    lib.fastgsl_within_rows.argtypes = [ctypes.c_int, vp, vp, ctypes.c_float]
    lib.fastgsl_within_rows.restype = ctypes.c_int
    lib.fastgsl_nearest_abi_version.restype = ctypes.c_int
    if lib.fastgsl_nearest_abi_version() != _ABI_VERSION:
        raise OSError("host nearest-site library has a different ABI version")
    return lib


host_library = _native.HostLibrary(manifest.NEAREST, _bind)


def available() -> bool:
    return host_library.load()[0] is not None


def _offsets(idx: torch.Tensor, S: int, V: int) -> torch.Tensor:
    counts = torch.bincount(idx // V, minlength=S) if idx.numel() else torch.zeros(S, dtype=torch.int64)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _cumulative(counts: torch.Tensor) -> torch.Tensor:
    counts = counts.to(torch.int64)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def segment_distances(queries: torch.Tensor, sites: torch.Tensor, site_of: torch.Tensor, shape, spacing,
                      query_counts: torch.Tensor | None = None, site_counts: torch.Tensor | None = None, *,
                      goal: str = "distances", tau: torch.Tensor | None = None, rank: torch.Tensor | None = None):
    """float32 distance from every query voxel to the nearest site of its segment's site set.

    Args:
        queries, sites: int64 CPU tensors of flat indices into a ``(S, *shape)`` grid, ascending.
        site_of: int64 ``(S,)``: query segment ``s`` is measured against the sites of segment ``site_of[s]``.
        shape: the spatial shape (2-D or 3-D).
        spacing: ``(S, len(shape))`` float64 (per query segment).
        query_counts, site_counts: int64 ``(S,)`` (optional): how many queries / sites each segment holds, where the
            caller knows them (else they are counted).
        goal: ``"distances"``: every query's exact distance.  ``"maximum"``: only each segment's maximum is exact
            (a query stops searching once it cannot raise it; its value is then at most the maximum).
            ``"within"``: only ``value <= tau[s]`` is exact (the search stops at the first site within ``tau[s]``;
            ``+inf`` where there is none); with a small tolerance (:func:`within_rows`) the sites of the few
            voxel rows within it are scanned instead of the tree.
            ``"quantile"``: only the order statistics from ``rank[s]`` on (0-based, among the segment's values) must
            be exact.  A sample of the segment's queries (every 16th, measured exactly) gives a limit ``T[s]`` below
            which values need not be exact: a query stops at the first site within it (its value is then ``<=
            T[s]``), while every value above ``T[s]`` is exact.  So where at most ``rank[s]`` values come out ``<=
            T[s]``, the order statistics from ``rank[s]`` on are exact; the caller checks that (``T[s] = -1``: no
            limit, every value exact).
        tau: float32 ``(S,)``, the tolerance of each query segment for ``goal="within"``; for ``goal="quantile"``
            a float32 ``(S,)`` tensor that receives ``T``.
        rank: int64 ``(S,)`` for ``goal="quantile"`` (negative: every value of that segment exact).

    Returns a float32 tensor like ``queries`` (``+inf`` where the site segment is empty), or None when the host
    library is unavailable.
    """
    lib = host_library.load()[0]
    if lib is None:
        return None
    nd, S = len(shape), site_of.numel()
    if nd not in (2, 3) or any(n > 2 ** 31 - 1 for n in shape):
        raise ValueError(f"shape must be 2-D or 3-D with axes below 2^31, got {tuple(shape)}")
    V = math.prod(shape)
    q = queries.contiguous().to(torch.int64)
    s = sites.contiguous().to(torch.int64)
    q_off = _offsets(q, S, V) if query_counts is None else _cumulative(query_counts)
    s_off = _offsets(s, S, V) if site_counts is None else _cumulative(site_counts)
    site_of = site_of.contiguous().to(torch.int64)
    shp = torch.tensor(shape, dtype=torch.int64)
    sp = torch.as_tensor(spacing, dtype=torch.float64).reshape(S, nd).contiguous()
    out = torch.empty(q.numel(), dtype=torch.float32)
    if goal == "within":
        tau = torch.as_tensor(tau, dtype=torch.float32).reshape(S).contiguous()
    if goal == "quantile":
        if not (isinstance(tau, torch.Tensor) and tau.dtype == torch.float32 and tau.shape == (S,)
                and tau.is_contiguous() and tau.device.type == "cpu"):
            raise ValueError("goal='quantile' needs tau, a contiguous float32 CPU tensor of shape (S,) to write to")
        rank = torch.as_tensor(rank, dtype=torch.int64).reshape(S).contiguous()
    rc = lib.fastgsl_nearest_distances(q.data_ptr(), q_off.data_ptr(), s.data_ptr(), s_off.data_ptr(),
                                       site_of.data_ptr(), S, nd, shp.data_ptr(), sp.data_ptr(), out.data_ptr(),
                                       max(1, torch.get_num_threads()), GOALS[goal],
                                       tau.data_ptr() if goal in ("within", "quantile") else None,
                                       rank.data_ptr() if goal == "quantile" else None)
    if rc:
        raise MemoryError("host nearest-site search: a worker thread failed (out of memory)")
    return out


def within_rows(shape, spacing, tau: float) -> int | None:
    """How many rows (along the last axis) :func:`segment_distances` with ``goal="within"`` reads per query for a
    segment of this spatial ``shape``, ``spacing`` and float32 tolerance ``tau``: the rows holding every offset
    within ``tau``, each scanned by one forward-moving cursor over the sorted sites instead of a k-d tree search.
    None when there are too many such rows and the k-d tree answers instead, or when the host library is
    unavailable."""
    lib = host_library.load()[0]
    if lib is None:
        return None
    shp = torch.tensor(tuple(shape), dtype=torch.int64)
    sp = torch.tensor(tuple(spacing), dtype=torch.float64)
    n = lib.fastgsl_within_rows(len(shape), shp.data_ptr(), sp.data_ptr(), float(tau))
    return None if n < 0 else n


def surface_voxels(pred: torch.Tensor, target: torch.Tensor, nd: int, modes):
    """The surface voxels of the boolean CPU masks ``pred``, ``target`` ``(B, C, *spatial)`` under each of ``modes``
    (names of :data:`SURFACE_MODES`), in one pass over their rows, without a full-size temporary.

    Returns ``(lists, per_volume, inside, box)``, or None when the host library is unavailable: ``lists[m]``, the
    int64 flat indices (ascending) of the voxels of mode ``m`` in the ``(2, B, C, *spatial)`` grid of pred's then
    target's masks; ``per_volume[m]``, how many of them lie in each of the ``2 * B * C`` masks; ``inside`` (int64
    ``(2 * B * C,)``, only with ``"outside"``, else None), the voxels of each mask inside the other; ``box``, the
    per-axis ``(lo, hi)`` inclusive bounds of every voxel found (None when none was).
    """
    lib = host_library.load()[0]
    if lib is None:
        return None
    B, C = pred.shape[:2]
    shape = tuple(pred.shape[2:])
    if pred.stride() != target.stride() or (shape and pred.stride(-1) != 1):
        pred, target = pred.contiguous(), target.contiguous()
    st = pred.stride()
    off = torch.tensor([b * st[0] + c * st[1] for b in range(B) for c in range(C)], dtype=torch.int64).repeat(2)
    if nd == 2:
        shp, strides = (1,) + shape, (0, st[2])
    else:
        shp, strides = shape, st[2:4]
    shp_t = torch.tensor(shp, dtype=torch.int64)
    str_t = torch.tensor(strides, dtype=torch.int64)
    mode_t = torch.tensor([SURFACE_MODES[m] for m in modes], dtype=torch.int32)
    counts = torch.zeros(len(modes), dtype=torch.int64)
    box = torch.zeros(6, dtype=torch.int64)
    nvol = 2 * B * C
    h = lib.fastgsl_surface_extract(pred.data_ptr(), target.data_ptr(), off.data_ptr(), nvol, nd, shp_t.data_ptr(),
                                    str_t.data_ptr(), mode_t.data_ptr(), len(modes), counts.data_ptr(),
                                    box.data_ptr(), max(1, torch.get_num_threads()))
    if not h:
        raise MemoryError("host surface extraction: out of memory")
    lists = [torch.empty(int(n), dtype=torch.int64) for n in counts.tolist()]
    ptrs = (ctypes.c_void_p * len(lists))(*[x.data_ptr() for x in lists])
    inside = torch.zeros(nvol, dtype=torch.int64) if "outside" in modes else None
    per_volume = torch.empty((len(modes), nvol), dtype=torch.int64)
    lib.fastgsl_surface_collect(h, ptrs, per_volume.data_ptr(), None if inside is None else inside.data_ptr(), nvol)
    lo, hi = box.tolist()[:3], box.tolist()[3:]
    if nd == 2:
        lo, hi = lo[1:], hi[1:]
    found = hi[0] >= lo[0]
    return lists, per_volume, inside, (list(zip(lo, hi)) if found else None)


def to_box(idx: torch.Tensor, shape, box, swap_half: int | None = None) -> torch.Tensor:
    """Flat indices ``idx`` (int64, CPU) into a ``(S, *shape)`` grid, re-expressed in the ``(S, *extent)`` grid of
    ``box`` (per-axis inclusive ``(lo, hi)``, holding every voxel of ``idx``).  ``swap_half``: each index also
    moves by that many volumes to the other half of the grid (pred's masks <-> target's).  Needs the host
    library."""
    lib = host_library.load()[0]
    if len(shape) == 2:
        shape, box = (1,) + tuple(shape), [(0, 0)] + list(box)
    shp = torch.tensor(shape, dtype=torch.int64)
    lo = torch.tensor([a for a, _ in box], dtype=torch.int64)
    ext = torch.tensor([b - a + 1 for a, b in box], dtype=torch.int64)
    idx = idx.contiguous()
    out = torch.empty_like(idx)
    lib.fastgsl_surface_to_box(idx.data_ptr(), idx.numel(), shp.data_ptr(), lo.data_ptr(), ext.data_ptr(),
                               swap_half or 0, int(swap_half is not None), out.data_ptr(),
                               max(1, torch.get_num_threads()))
    return out


def segment_select(values: torch.Tensor, counts: torch.Tensor, k: torch.Tensor):
    """The ``k[s]``-th and ``k[s] + 1``-th smallest (0-based) of each consecutive segment of the float32 CPU
    ``values`` (``counts[s]`` each): two float32 ``(S,)`` tensors (0 and +inf for an empty segment; +inf for the
    second where the segment has no value past ``k[s]``), or None when the host library is unavailable."""
    lib = host_library.load()[0]
    if lib is None:
        return None
    v = values.contiguous()
    off = _cumulative(counts)
    k = k.to(torch.int64).contiguous()
    lo = torch.empty(counts.numel(), dtype=torch.float32)
    hi = torch.empty_like(lo)
    if lib.fastgsl_segment_select(v.data_ptr(), off.data_ptr(), counts.numel(), k.data_ptr(), lo.data_ptr(),
                                  hi.data_ptr(), max(1, torch.get_num_threads())):
        raise MemoryError("host segment selection: out of memory")
    return lo, hi
