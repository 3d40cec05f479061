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

_ABI_VERSION = 1


def _bind(lib: ctypes.CDLL):
    vp = ctypes.c_void_p
    lib.fastgsl_nearest_distances.argtypes = [vp, vp, vp, vp, vp, ctypes.c_longlong, ctypes.c_int, vp, vp, vp,
                                              ctypes.c_int]
    lib.fastgsl_nearest_distances.restype = ctypes.c_int
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


def segment_distances(queries: torch.Tensor, sites: torch.Tensor, site_of: torch.Tensor, shape, spacing):
    """float32 distance from every query voxel to the nearest site of its segment's site set.

    Args:
        queries, sites: int64 CPU tensors of flat indices into a ``(S, *shape)`` grid, ascending.
        site_of: int64 ``(S,)``: query segment ``s`` is measured against the sites of segment ``site_of[s]``.
        shape: the spatial shape (2-D or 3-D).
        spacing: ``(S, len(shape))`` float64 (per query segment).

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
    q_off, s_off = _offsets(q, S, V), _offsets(s, S, V)
    site_of = site_of.contiguous().to(torch.int64)
    shp = torch.tensor(shape, dtype=torch.int64)
    sp = torch.as_tensor(spacing, dtype=torch.float64).reshape(S, nd).contiguous()
    out = torch.empty(q.numel(), dtype=torch.float32)
    rc = lib.fastgsl_nearest_distances(q.data_ptr(), q_off.data_ptr(), s.data_ptr(), s_off.data_ptr(),
                                       site_of.data_ptr(), S, nd, shp.data_ptr(), sp.data_ptr(), out.data_ptr(),
                                       max(1, torch.get_num_threads()))
    if rc:
        raise MemoryError("host nearest-site search: a worker thread failed (out of memory)")
    return out
