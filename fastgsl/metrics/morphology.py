"""The surfaces the metrics measure, computed on the device from boolean masks: MONAI's edge voxels, ITK's
``LabelContour`` voxels and the sites of ITK's signed Maurer distance map; and voxel counts."""
from __future__ import annotations

import torch


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


def edges_into(m: torch.Tensor, nd: int, out: torch.Tensor) -> None:
    """MONAI's edges: ``m xor binary_erosion(m)`` with scipy's default cross element and ``border_value=0``."""
    _boundary_into(m, nd, False, False, out)


def label_contour_into(m: torch.Tensor, nd: int, out: torch.Tensor) -> None:
    """ITK ``LabelContour`` (fullyConnected=False): object voxels with a face neighbour in the background; the
    image border is not background."""
    _boundary_into(m, nd, True, False, out)


def maurer_contour_into(m: torch.Tensor, nd: int, out: torch.Tensor) -> None:
    """Sites of ITK ``SignedMaurerDistanceMap``: object voxels with a background voxel among their 8 / 26
    neighbours; the image border is not background."""
    _boundary_into(m, nd, True, True, out)


def count_voxels(m: torch.Tensor, nd: int) -> torch.Tensor:
    """The number of true voxels of each ``(..., *spatial)`` mask."""
    return m.flatten(m.ndim - nd).sum(-1)


__all__ = ["edges_into", "label_contour_into", "maurer_contour_into", "count_voxels"]
