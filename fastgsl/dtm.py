"""Signed distance transform maps (DTMs) of masks and label maps.

Conventions (``convention=``), each checked in ``tests/test_dtm.py`` against the peer itself:

``"itk"`` (default)
    SimpleITK ``SignedMaurerDistanceMap(insideIsPositive=False, squaredDistance=False, useImageSpacing=True)``,
    the DTM of the paper's code and of MIST.  The sites are the object's contour voxels: object voxels with a
    background voxel among their 8 (2-D) or 26 (3-D) neighbours; the image border is not background.
    ``D = -dist(p, contour)`` inside, ``+dist`` outside, 0 on the contour.
``"kervadec"``
    The boundary-loss repository of Kervadec et al. (``one_hot2dist`` in its ``utils.py``):
    ``EDT(~m) * ~m - (EDT(m) - 1) * m`` with spacing inside both EDTs (the ``-1`` is not scaled by spacing).
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

Engine: :mod:`fastgsl.ops.edt` computes every map of a batch in one launch sequence of the exact EDT kernel
(``kernels/edt_kernel.cu``): through CuPy on the tensor's CUDA device and torch's current stream, or with the same
source built for the host on CPU tensors.  scipy is used only when the host library is unavailable, with a warning.
The result is exact: with unit spacing it equals scipy's float64 distances rounded to float32.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from fastgsl.ops import edt as _edt
from fastgsl.validation import (check_choice, check_integer_labels, check_label_range, check_positive_int,
                                check_spacing, check_tensor)

DTM_CONVENTIONS = ("itk", "kervadec", "edt")


def _fill_value(fill, convention: str, shape, spacing) -> float:
    if fill is None:
        fill = "zero" if convention == "kervadec" else "diagonal"
    if fill == "diagonal":
        return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
    if fill == "zero":
        return 0.0
    if isinstance(fill, (int, float)) and not isinstance(fill, bool) and math.isfinite(fill):
        return float(fill)
    raise ValueError(f"fill must be 'diagonal', 'zero' or a finite number, got {fill!r}")


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
    check_tensor("mask", mask)
    check_choice("convention", convention, DTM_CONVENTIONS)
    if spatial_dims is None:
        spatial_dims = min(mask.ndim, 3)
    if spatial_dims not in (2, 3) or mask.ndim < spatial_dims:
        raise ValueError(f"signed_distance supports 2-D and 3-D masks; got spatial_dims={spatial_dims} for a "
                         f"tensor of shape {tuple(mask.shape)}")
    sp = check_spacing(spacing, spatial_dims)
    fv = _fill_value(fill, convention, mask.shape[mask.ndim - spatial_dims:], sp)
    return _edt.signed_dtm(mask, sp, spatial_dims=spatial_dims, convention=convention, fill_value=fv)


def labels_to_dtm(labels: torch.Tensor, num_classes: int, spacing: Sequence[float] | float | None = None,
                  convention: str = "itk", *, spatial_dims: int | None = None, fill=None) -> torch.Tensor:
    """DTM of each class of an integer label map: ``(B, *spatial)`` or ``(B, 1, *spatial)`` -> ``(B, C, *spatial)``.

    Channel ``c`` is the DTM of ``labels == c``.  No one-hot tensor of the batch is materialised.
    ``spatial_dims`` defaults to ``labels.ndim - 1``; pass it when the labels carry a singleton channel axis.
    """
    check_integer_labels("labels", labels)
    check_positive_int("num_classes", num_classes)
    check_choice("convention", convention, DTM_CONVENTIONS)
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
    check_label_range("labels", labels, num_classes)
    sp = check_spacing(spacing, spatial_dims)
    return class_dtms(labels, num_classes, sp, convention, fill)


def class_dtms(labels: torch.Tensor, num_classes: int, spacing: tuple, convention: str, fill=None) -> torch.Tensor:
    """:func:`labels_to_dtm` for arguments already validated: ``(B, *spatial)`` integer labels within
    ``[0, num_classes)``, ``spacing`` a tuple of one float per spatial axis, a known ``convention``.

    The losses call this after their own input checks, so that a forward pass checks the labels once."""
    fv = _fill_value(fill, convention, labels.shape[1:], spacing)
    return _edt.labels_dtm(labels, num_classes, spacing, convention=convention, fill_value=fv)


__all__ = ["signed_distance", "labels_to_dtm", "class_dtms", "DTM_CONVENTIONS"]
