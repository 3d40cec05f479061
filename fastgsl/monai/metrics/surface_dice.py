"""MONAI ``compute_surface_dice`` and ``SurfaceDiceMetric`` on fastgsl's batched surface metrics."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.metrics import surface_dice as _monai
from monai.metrics.utils import create_ignore_mask, ignore_background

from fastgsl import metrics as _fm
from fastgsl.monai._fallback import answered, fall_back
from fastgsl.monai.metrics._common import foreground, present, spacing_rows, warn_empty


def compute_surface_dice(y_pred: torch.Tensor, y: torch.Tensor, class_thresholds: list[float],
                         include_background: bool = False, distance_metric: str = "euclidean", spacing=None,
                         use_subvoxels: bool = False, ignore_index: int | None = None) -> torch.Tensor:
    """MONAI 1.6 ``monai.metrics.compute_surface_dice``: same arguments, checks and ``(B, C')`` float32 result.

    ``NSD = (|{d in D(P->T): d <= tau_c}| + |{d in D(T->P): d <= tau_c}|) / (|E(P)| + |E(T)|)``, counting MONAI's
    edge voxels (``use_subvoxels=False``), with ``tau_c = class_thresholds[c]`` in spacing units.  Both masks empty
    -> nan, one empty -> 0 (MONAI's values).  Falls back to MONAI (one-time ``FallbackWarning``) for
    ``use_subvoxels=True`` (DeepMind's surfel areas are not reproduced) and ``distance_metric`` other than
    ``"euclidean"``.
    """
    reason = "use_subvoxels=True" if use_subvoxels else \
        f"distance_metric={distance_metric!r}" if distance_metric != "euclidean" else None
    if reason is not None:
        fall_back("compute_surface_dice", reason)
        return _monai.compute_surface_dice(y_pred, y, class_thresholds, include_background, distance_metric, spacing,
                                           use_subvoxels, ignore_index)
    mask = create_ignore_mask(y, ignore_index)
    if mask is not None:
        y_pred, y = y_pred * mask, y * mask
    if not include_background:
        y_pred, y = ignore_background(y_pred=y_pred, y=y)
    if not isinstance(y_pred, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError("y_pred and y must be PyTorch Tensor.")
    if y_pred.ndimension() not in (4, 5) or y.ndimension() not in (4, 5):
        raise ValueError("y_pred and y should be one-hot encoded: [B,C,H,W] or [B,C,H,W,D].")
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y should have same shape, but instead, shapes are {y_pred.shape} (y_pred) and "
                         f"{y.shape} (y).")
    B, C = y_pred.shape[:2]
    if C != len(class_thresholds):
        raise ValueError(f"number of classes ({C}) does not match number of class thresholds "
                         f"({len(class_thresholds)}).")
    if any(~np.isfinite(class_thresholds)):
        raise ValueError("All class thresholds need to be finite.")
    if any(np.array(class_thresholds) < 0):
        raise ValueError("All class thresholds need to be >= 0.")
    rows = spacing_rows(spacing, B, y_pred.ndim - 2)
    class_offset = 0 if include_background else 1
    p, t = foreground(y_pred), foreground(y)
    warn_empty(present(p), present(t), lambda c: c + class_offset,
               lambda c: ignore_index is not None and c + class_offset == ignore_index)
    answered()
    return _fm.surface_dice(p, t, [float(v) for v in class_thresholds], spacing=rows, include_background=True,
                            convention="monai", empty="nan")


class SurfaceDiceMetric(_monai.SurfaceDiceMetric):
    """MONAI 1.6 ``monai.metrics.SurfaceDiceMetric`` (a MONAI ``CumulativeIterationMetric``), each batch computed by
    :func:`compute_surface_dice` above; ``aggregate()``, ``reset()``, ``get_not_nans`` are MONAI's."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return compute_surface_dice(y_pred, y, class_thresholds=self.class_thresholds,
                                    include_background=self.include_background, distance_metric=self.distance_metric,
                                    spacing=kwargs.get("spacing"), use_subvoxels=self.use_subvoxels,
                                    ignore_index=self.ignore_index)
