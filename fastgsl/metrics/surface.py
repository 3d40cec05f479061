"""The surface-distance metrics: Hausdorff distance (and its percentile variant), average surface distance and
normalised surface Dice, each a reduction of the directed distance sets of :mod:`.distances`."""
from __future__ import annotations

from typing import Sequence

import torch

from .distances import directed_sets
from .inputs import check_percentile, spacing_rows, to_masks, tolerances
from .policies import all_absent, apply_policy, diagonals, resolve_empty


def hausdorff_distance(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
                       spacing=None, include_background: bool = False, percentile: float | None = None,
                       directed: bool = False, convention: str = "monai", empty: str | None = None,
                       spatial_dims: int | None = None) -> torch.Tensor:
    """Hausdorff distance, or its ``percentile`` variant (HD95 with ``percentile=95``), ``(B, C')`` float32.

    ``HD = max(Q(D(P->T)), Q(D(T->P)))`` (``directed=True``: ``Q(D(P->T))``), where ``Q`` is the maximum or the
    linear-interpolated percentile and the directed distance sets ``D`` follow ``convention`` (module docstring:
    edge voxels for ``"monai"``, all foreground voxels against the other mask's clamped signed Maurer map for
    ``"paper"``).

    Args:
        pred, target: binary masks ``(B, C, *spatial)`` or, with ``num_classes``, integer label maps.
        num_classes: number of labels of a label map.
        spacing: voxel size (module docstring), per call or per batch item; distances are in its units.
        include_background: keep channel / label 0.
        percentile: None for the maximum, or a number in [0, 100].
        directed: only the pred -> target direction.
        convention: ``"monai"`` or ``"paper"``.
        empty: ``"nan"`` (both absent: nan, one absent: +inf) or ``"paper"`` (0 / image diagonal); default
            ``"nan"`` for ``"monai"`` and ``"paper"`` for ``"paper"``.
        spatial_dims: 2 or 3, only needed for ``(B, 1, H, W)`` label maps.
    """
    empty = resolve_empty(convention, empty)
    percentile = check_percentile(percentile)
    p, t, nd = to_masks(pred, target, num_classes, include_background, spatial_dims)
    spacings = spacing_rows(spacing, p.shape[0], nd)
    B, C = p.shape[:2]
    maximum = percentile is None or percentile == 100.0
    sets = directed_sets(p, t, nd, spacings, convention, over_foreground=convention == "paper",
                         need="maximum" if maximum else ("quantile", percentile / 100.0))
    if sets is None:
        return all_absent(B, C, p.device, empty, float("nan"), 0.0)
    per_dir = sets.maximum() if maximum else sets.quantile(percentile / 100.0)
    per_dir = per_dir.view(2, B, C)
    hd = per_dir[0] if directed else torch.maximum(per_dir[0], per_dir[1])
    hd = apply_policy(hd, sets.present_p, sets.present_t, empty, float("nan"), float("inf"), 0.0,
                      diagonals(spacings, p.shape[2:], p.device).expand(B, C))
    return hd.to(torch.float32)


def average_surface_distance(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
                             spacing=None, include_background: bool = False, symmetric: bool = True,
                             convention: str = "monai", empty: str | None = None,
                             spatial_dims: int | None = None) -> torch.Tensor:
    """Average surface distance, ``(B, C')`` float32.

    ``"monai"``: ``(sum D(P->T) + sum D(T->P)) / (|D(P->T)| + |D(T->P)|)`` over edge voxels;
    ``"paper"``: ``(mean D(P->T) + mean D(T->P)) / 2`` over ``LabelContour`` voxels with the other mask's
    ``|SignedMaurer|``.  ``symmetric=False``: ``mean D(P->T)`` in either convention.

    Args: as :func:`hausdorff_distance`, with ``symmetric`` in place of ``percentile``/``directed``.  For
    ``"paper"`` a full mask has no contour and counts as absent under the ``empty`` policy.
    """
    empty = resolve_empty(convention, empty)
    p, t, nd = to_masks(pred, target, num_classes, include_background, spatial_dims)
    spacings = spacing_rows(spacing, p.shape[0], nd)
    B, C = p.shape[:2]
    sets = directed_sets(p, t, nd, spacings, convention)
    if sets is None:
        return all_absent(B, C, p.device, empty, float("nan"), 0.0)
    s, n = sets.total().view(2, B, C), sets.counts.view(2, B, C).to(torch.float64)
    if not symmetric:
        asd = s[0] / n[0]
    elif convention == "monai":
        asd = (s[0] + s[1]) / (n[0] + n[1])
    else:
        asd = 0.5 * (s[0] / n[0] + s[1] / n[1])
    asd = apply_policy(asd, sets.present_p, sets.present_t, empty, float("nan"), float("inf"), 0.0,
                       diagonals(spacings, p.shape[2:], p.device).expand(B, C))
    return asd.to(torch.float32)


def surface_dice(pred: torch.Tensor, target: torch.Tensor, tolerance: float | Sequence[float],
                 num_classes: int | None = None, *, spacing=None, include_background: bool = False,
                 convention: str = "monai", empty: str | None = None,
                 spatial_dims: int | None = None) -> torch.Tensor:
    """Normalised surface Dice at ``tolerance`` (physical units), ``(B, C')`` float32.

    ``NSD = (|{d in D(P->T) : d <= tau_c}| + |{d in D(T->P) : d <= tau_c}|) / (|D(P->T)| + |D(T->P)|)``, counting
    boundary voxels (MONAI ``compute_surface_dice(use_subvoxels=False)``).  The paper reports no surface Dice;
    ``"paper"`` is fastgsl's analogue on the paper's surfaces: ``LabelContour`` voxels against the other mask's
    ``|SignedMaurer|``, as its ASD.

    Args:
        tolerance: ``tau``, one number for every class or one per output class (``C'`` of them), finite, >= 0.
        empty: ``"nan"``: both absent -> nan, one absent -> 0 (MONAI); ``"paper"``: both absent -> 1, one -> 0.
        others: as :func:`hausdorff_distance`.
    """
    empty = resolve_empty(convention, empty)
    p, t, nd = to_masks(pred, target, num_classes, include_background, spatial_dims)
    B, C = p.shape[:2]
    tol = tolerances(tolerance, C)
    spacings = spacing_rows(spacing, B, nd)
    # compare in float32 like MONAI (float32 distances against the threshold)
    tau = torch.tensor(tol, dtype=torch.float32, device=p.device)
    sets = directed_sets(p, t, nd, spacings, convention, need=tau)
    if sets is None:
        return all_absent(B, C, p.device, empty, float("nan"), 1.0)
    good = sets.within(tau).view(2, B, C)
    n = sets.counts.view(2, B, C)
    nsd = (good[0] + good[1]).to(torch.float64) / (n[0] + n[1]).clamp(min=1).to(torch.float64)
    nsd = apply_policy(nsd, sets.present_p, sets.present_t, empty, float("nan"), 0.0, 1.0, 0.0)
    return nsd.to(torch.float32)


__all__ = ["hausdorff_distance", "average_surface_distance", "surface_dice"]
