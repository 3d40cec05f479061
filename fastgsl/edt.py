"""Exact Euclidean distance transform: the low-level engine under ``fastgsl.dtm`` and ``fastgsl.metrics``.

Contract (other modules rely on it):

``distance_to_sites(sites, spacing=None, *, spatial_dims)``
    ``sites`` is a bool tensor ``(..., *spatial)``; returns float32 of the same shape on the same device, the
    Euclidean distance (in physical units, voxel centre to voxel centre) from every voxel to the nearest True
    voxel of its own batch item; 0 at the sites; ``+inf`` everywhere in an item with no site.

This first version delegates to scipy per item.  The CUDA kernel issue replaces the internals (a batched
Maurer-style kernel on the GPU, the same source built for the host on the CPU) without changing the contract.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def distance_to_sites(sites: torch.Tensor, spacing=None, *, spatial_dims: int) -> torch.Tensor:
    if sites.dtype != torch.bool:
        raise TypeError(f"sites must be a bool tensor, got {sites.dtype}")
    if spatial_dims not in (2, 3) or sites.ndim < spatial_dims:
        raise ValueError(f"spatial_dims must be 2 or 3 and at most sites.ndim, got {spatial_dims}")
    shape = tuple(sites.shape[sites.ndim - spatial_dims:])
    sp = (1.0,) * spatial_dims if spacing is None else tuple(float(s) for s in spacing)
    if len(sp) != spatial_dims:
        raise ValueError(f"spacing has {len(sp)} entries for {spatial_dims} spatial dimensions")
    flat = sites.reshape((-1,) + shape).cpu().numpy()
    out = np.empty(flat.shape, np.float32)
    for i, s in enumerate(flat):
        out[i] = ndimage.distance_transform_edt(~s, sampling=sp) if s.any() else np.inf
    return torch.from_numpy(out).reshape(sites.shape).to(sites.device)
