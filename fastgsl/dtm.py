"""Signed distance transform maps (DTMs) of masks and label maps.

Conventions (``convention=``), as defined in ``shared/CONVENTIONS.md`` and checked in the tests against the
peers themselves:

``"itk"`` (default)
    SimpleITK ``SignedMaurerDistanceMap(insideIsPositive=False, squaredDistance=False, useImageSpacing=True)``,
    the DTM of the paper's code and of MIST.  The sites are the object's contour voxels: object voxels with a
    background voxel among their 8 (2-D) or 26 (3-D) neighbours; the image border is not background.
    ``D = -dist(p, contour)`` inside, ``+dist`` outside, 0 on the contour.
``"kervadec"``
    The boundary-loss repository: ``EDT(~m) * ~m - (EDT(m) - 1) * m`` with spacing inside both EDTs (the ``-1``
    is not scaled by spacing).
``"edt"``
    Plain signed EDT, ``EDT(~m) - EDT(m)``, where ``EDT(x)`` is scipy's distance from each nonzero voxel to the
    nearest zero voxel.

A mask with no object or no background has no boundary, and every peer returns garbage or zeros there, so
fastgsl fills it with an explicit value (``fill=``):

``"diagonal"``
    The paper's choice: ``+diag`` for an empty mask, ``-diag`` for a full one, where ``diag`` is the image
    diagonal in physical units, ``sqrt(sum_i (n_i * spacing_i)^2)``.  Default for ``"itk"`` and ``"edt"``.
``"zero"``
    0 everywhere.  Default for ``"kervadec"``, whose code returns zeros for an absent class.
a number ``v``
    ``+v`` for empty, ``-v`` for full.

Spacing is given per spatial axis in the tensor's axis order (not ITK's reversed x, y, z order).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

CONVENTIONS = ("itk", "kervadec", "edt")


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, (int, float)):
        spacing = (float(spacing),) * ndim
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim:
        raise ValueError(f"spacing has {len(spacing)} entries but the data has {ndim} spatial dimensions")
    if any(not math.isfinite(s) or s <= 0 for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    return spacing


def _fill_value(fill, convention: str, shape, spacing) -> float:
    if fill is None:
        fill = "zero" if convention == "kervadec" else "diagonal"
    if fill == "diagonal":
        return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
    if fill == "zero":
        return 0.0
    if isinstance(fill, (int, float)) and math.isfinite(fill):
        return float(fill)
    raise ValueError(f"fill must be 'diagonal', 'zero' or a finite number, got {fill!r}")


def _check_convention(convention: str):
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _signed_one(m: np.ndarray, spacing, convention: str, fill: float) -> np.ndarray:
    """Reference (scipy) DTM of one boolean mask; the last resort when the native EDT is unavailable."""
    if not m.any():
        return np.full(m.shape, fill, np.float32)
    if m.all():
        return np.full(m.shape, -fill, np.float32)
    if convention == "itk":
        full = np.ones((3,) * m.ndim, bool)
        contour = m & ~ndimage.binary_erosion(m, structure=full, border_value=1)
        dist = ndimage.distance_transform_edt(~contour, sampling=spacing)
        out = np.where(m, -dist, dist)
    elif convention == "kervadec":
        out = ndimage.distance_transform_edt(~m, sampling=spacing) * ~m \
            - (ndimage.distance_transform_edt(m, sampling=spacing) - 1) * m
    else:
        out = ndimage.distance_transform_edt(~m, sampling=spacing) - ndimage.distance_transform_edt(m, sampling=spacing)
    return out.astype(np.float32)


def _batched_signed(masks: np.ndarray, spatial_dims: int, spacing, convention: str, fill) -> np.ndarray:
    shape = masks.shape[masks.ndim - spatial_dims:]
    fv = _fill_value(fill, convention, shape, spacing)
    flat = masks.reshape((-1,) + shape)
    out = np.empty(flat.shape, np.float32)
    for i in range(flat.shape[0]):
        out[i] = _signed_one(flat[i], spacing, convention, fv)
    return out.reshape(masks.shape)


def signed_distance(mask: torch.Tensor, spacing: Sequence[float] | float | None = None, *,
                    spatial_dims: int | None = None, convention: str = "itk", fill=None) -> torch.Tensor:
    """Signed DTM of every mask in ``mask`` (shape ``(..., *spatial)``), as float32 on the mask's device.

    Args:
        mask: nonzero marks the object.  Leading dimensions are batch dimensions.
        spacing: voxel size per spatial axis (tensor order); ``None`` means 1.
        spatial_dims: 2 or 3.  Defaults to ``min(mask.ndim, 3)``; pass 2 for a batch of 2-D masks.
        convention: ``"itk"``, ``"kervadec"`` or ``"edt"`` (module docstring).
        fill: value for masks with no object or no background (module docstring).
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    _check_convention(convention)
    if spatial_dims is None:
        spatial_dims = min(mask.ndim, 3)
    if spatial_dims not in (2, 3) or mask.ndim < spatial_dims:
        raise ValueError(f"signed_distance supports 2-D and 3-D masks; got spatial_dims={spatial_dims} for a "
                         f"tensor of shape {tuple(mask.shape)}")
    sp = _spacing(spacing, spatial_dims)
    m = (mask != 0).cpu().numpy()
    out = _batched_signed(m, spatial_dims, sp, convention, fill)
    return torch.from_numpy(out).to(mask.device)


def labels_to_dtm(labels: torch.Tensor, num_classes: int, spacing: Sequence[float] | float | None = None,
                  convention: str = "itk", *, spatial_dims: int | None = None, fill=None) -> torch.Tensor:
    """DTM of each class of an integer label map: ``(B, *spatial)`` or ``(B, 1, *spatial)`` -> ``(B, C, *spatial)``.

    Channel ``c`` is the DTM of ``labels == c``.  No one-hot tensor of the batch is materialised.
    ``spatial_dims`` defaults to ``labels.ndim - 1``; pass it when the labels carry a singleton channel axis.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    _check_convention(convention)
    if spatial_dims is None:
        spatial_dims = labels.ndim - 1
    if spatial_dims not in (2, 3):
        raise ValueError(f"labels_to_dtm supports 2-D and 3-D label maps, got spatial_dims={spatial_dims}")
    if labels.ndim == spatial_dims + 2:
        if labels.shape[1] != 1:
            raise ValueError(f"labels must be (B, *spatial) or (B, 1, *spatial), got {tuple(labels.shape)}")
        labels = labels[:, 0]
    elif labels.ndim != spatial_dims + 1:
        raise ValueError(f"labels must be (B, *spatial) or (B, 1, *spatial) with {spatial_dims} spatial "
                         f"dimensions, got {tuple(labels.shape)}")
    if labels.numel():
        lo, hi = torch.aminmax(labels)
        if lo.item() < 0 or hi.item() >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), found values in [{lo.item()}, {hi.item()}]")
    sp = _spacing(spacing, spatial_dims)
    lab = labels.cpu().numpy()
    B = lab.shape[0]
    shape = lab.shape[1:]
    fv = _fill_value(fill, convention, shape, sp)
    out = np.empty((B, num_classes) + shape, np.float32)
    for b in range(B):
        for c in range(num_classes):
            out[b, c] = _signed_one(lab[b] == c, sp, convention, fv)
    return torch.from_numpy(out).to(labels.device)


__all__ = ["signed_distance", "labels_to_dtm", "CONVENTIONS"]
