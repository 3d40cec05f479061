"""MONAI ``compute_hausdorff_distance`` and ``HausdorffDistanceMetric`` on fastgsl's batched surface metrics."""
from __future__ import annotations

from typing import Any

import torch
from monai.metrics import hausdorff_distance as _monai
from monai.metrics.utils import ignore_background
from monai.utils import convert_data_type

from fastgsl import metrics as _fm
from fastgsl.monai._fallback import answered, fall_back
from fastgsl.monai.metrics._common import (check_percentile, foreground, masked_batch, present, spacing_rows,
                                            warn_empty)


def compute_hausdorff_distance(y_pred, y, include_background: bool = False, distance_metric: str = "euclidean",
                               percentile: float | None = None, directed: bool = False, spacing=None,
                               ignore_index: int | None = None) -> torch.Tensor:
    """MONAI 1.6 ``monai.metrics.compute_hausdorff_distance``: same arguments, ``(B, C')`` float32, same numbers.

    Per (item, channel): ``max(Q(D(P->T)), Q(D(T->P)))`` (``directed``: ``Q(D(P->T))``) over MONAI's edge voxels
    (``mask xor binary_erosion(mask)``, a mask being ``x == 1``), ``Q`` the maximum, or with a truthy ``percentile``
    the linear-interpolated percentile (``percentile=0`` means the maximum, as in MONAI); distances with ``spacing``
    (MONAI's forms: a number, one per axis, or one sequence per item).  The whole batch is one call to
    :func:`fastgsl.metrics.hausdorff_distance` (exact k-d tree or EDT) instead of MONAI's per-(item, class) loop.

    Empty masks, MONAI's values (kept because this layer promises MONAI's numbers): both empty -> nan; one empty ->
    inf, but nan with a percentile (``monai/metrics/hausdorff_distance.py`` of MONAI 1.6.1 takes ``torch.quantile``
    of all-inf distances, which interpolates ``inf - inf``; MONAI issue #9095).  fastgsl's own policy differs and
    is chosen explicitly there: ``fastgsl.metrics.hausdorff_distance(..., empty="nan")`` gives inf for one empty
    mask with or without a percentile, and ``empty="paper"`` gives 0 / the image diagonal.  The class ``ignore_index`` gets nan, as in MONAI.

    Falls back to MONAI's function (one-time ``FallbackWarning``) for ``distance_metric`` other than
    ``"euclidean"``: fastgsl's EDT and k-d tree are Euclidean only.
    """
    if distance_metric != "euclidean":
        fall_back("compute_hausdorff_distance", f"distance_metric={distance_metric!r}")
        return _monai.compute_hausdorff_distance(y_pred, y, include_background, distance_metric, percentile, directed,
                                                 spacing, ignore_index)
    class_offset = 0
    if not include_background:
        y_pred, y = ignore_background(y_pred=y_pred, y=y)
        class_offset = 1
    y_pred = convert_data_type(y_pred, output_type=torch.Tensor, dtype=torch.float)[0]
    y = convert_data_type(y, output_type=torch.Tensor, dtype=torch.float)[0]
    if y.shape != y_pred.shape:
        raise ValueError(f"y_pred and y should have same shapes, got {y_pred.shape} and {y.shape}.")
    check_percentile(percentile)
    B, C = y_pred.shape[:2]
    rows = spacing_rows(spacing, B, y_pred.ndim - 2)
    p, t = foreground(y_pred), foreground(y)
    p_any, t_any = present(p), present(t)
    ignored = (lambda c: ignore_index is not None and c + class_offset == ignore_index)
    warn_empty(p_any, t_any, lambda c: c + class_offset, ignored)
    answered()
    hd = _fm.hausdorff_distance(p, t, spacing=rows, include_background=True, percentile=percentile or None,
                                directed=directed, convention="monai", empty="nan")
    if percentile:
        hd = torch.where(p_any ^ t_any, float("nan"), hd)
    if ignore_index is not None and 0 <= ignore_index - class_offset < C:
        hd[:, ignore_index - class_offset] = float("nan")
    return hd


class HausdorffDistanceMetric(_monai.HausdorffDistanceMetric):
    """MONAI 1.6 ``monai.metrics.HausdorffDistanceMetric`` (a MONAI ``CumulativeIterationMetric``): same constructor,
    ``__call__`` per batch (``spacing=`` as a keyword), ``aggregate()`` / ``reset()`` / ``get_not_nans`` inherited
    from MONAI; each batch is computed by :func:`compute_hausdorff_distance` above."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        y_pred, y = masked_batch(y_pred, y, self.ignore_index)
        return compute_hausdorff_distance(y_pred, y, include_background=self.include_background,
                                          distance_metric=self.distance_metric, percentile=self.percentile,
                                          directed=self.directed, spacing=kwargs.get("spacing"),
                                          ignore_index=self.ignore_index)
