"""MONAI ``compute_average_surface_distance`` and ``SurfaceDistanceMetric`` on fastgsl's batched surface metrics."""
from __future__ import annotations

from typing import Any

import torch
from monai.metrics import surface_distance as _monai
from monai.metrics.utils import ignore_background
from monai.utils import convert_data_type

from fastgsl import metrics as _fm
from fastgsl.monai._fallback import answered, fall_back
from fastgsl.monai.metrics._common import foreground, masked_batch, present, spacing_rows, warn_empty


def compute_average_surface_distance(y_pred, y, include_background: bool = False, symmetric: bool = False,
                                     distance_metric: str = "euclidean", spacing=None,
                                     ignore_index: int | None = None) -> torch.Tensor:
    """MONAI 1.6 ``monai.metrics.compute_average_surface_distance``: same arguments, ``(B, C')`` float32.

    Per (item, channel): the mean of ``D(P->T)`` over MONAI's edge voxels, or with ``symmetric`` the mean of both
    directed sets concatenated, ``(sum D(P->T) + sum D(T->P)) / (|E(P)| + |E(T)|)``; spacing and masks as in
    :func:`fastgsl.monai.metrics.compute_hausdorff_distance`.  Empty masks as MONAI: both -> nan, one -> inf.
    MONAI's empty-mask warnings name the class by its output column (not its label) here, and so do these.
    Falls back to MONAI for ``distance_metric`` other than ``"euclidean"``.
    """
    if distance_metric != "euclidean":
        fall_back("compute_average_surface_distance", f"distance_metric={distance_metric!r}")
        return _monai.compute_average_surface_distance(y_pred, y, include_background, symmetric, distance_metric,
                                                       spacing, ignore_index)
    if not include_background:
        y_pred, y = ignore_background(y_pred=y_pred, y=y)
    y_pred = convert_data_type(y_pred, output_type=torch.Tensor, dtype=torch.float)[0]
    y = convert_data_type(y, output_type=torch.Tensor, dtype=torch.float)[0]
    if y.shape != y_pred.shape:
        raise ValueError(f"y_pred and y should have same shapes, got {y_pred.shape} and {y.shape}.")
    B = y_pred.shape[0]
    rows = spacing_rows(spacing, B, y_pred.ndim - 2)
    class_offset = 0 if include_background else 1
    p, t = foreground(y_pred), foreground(y)
    warn_empty(present(p), present(t), lambda c: c,
               lambda c: ignore_index is not None and c + class_offset == ignore_index)
    answered()
    return _fm.average_surface_distance(p, t, spacing=rows, include_background=True, symmetric=symmetric,
                                        convention="monai", empty="nan")


class SurfaceDistanceMetric(_monai.SurfaceDistanceMetric):
    """MONAI 1.6 ``monai.metrics.SurfaceDistanceMetric`` (a MONAI ``CumulativeIterationMetric``), each batch computed
    by :func:`compute_average_surface_distance` above; ``aggregate()``, ``reset()``, ``get_not_nans`` are MONAI's."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        y_pred, y = masked_batch(y_pred, y, self.ignore_index)
        return compute_average_surface_distance(y_pred, y, include_background=self.include_background,
                                                symmetric=self.symmetric, distance_metric=self.distance_metric,
                                                spacing=kwargs.get("spacing"), ignore_index=self.ignore_index)
