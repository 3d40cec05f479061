"""The overlap metric: Dice per (item, class)."""
from __future__ import annotations

import torch

from .inputs import to_masks
from .morphology import count_voxels
from .policies import resolve_empty


def dice_score(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None, *,
               include_background: bool = False, convention: str = "monai", empty: str | None = None,
               spatial_dims: int | None = None) -> torch.Tensor:
    """Dice coefficient ``2 |P n T| / (|P| + |T|)`` per (item, class), ``(B, C')`` float32.

    Args:
        pred, target: binary masks ``(B, C, *spatial)`` or, with ``num_classes``, integer label maps.
        num_classes: number of labels of a label map (classes ``0 .. num_classes - 1``).
        include_background: keep channel / label 0.
        convention: ``"monai"`` or ``"paper"``; only selects the default ``empty`` policy (the formula is shared
            by MONAI ``compute_dice`` and SimpleITK ``LabelOverlapMeasuresImageFilter``).
        empty: ``"nan"``: nan whenever the target is empty (MONAI ``ignore_empty=True``); ``"paper"``: 1 when both
            are empty (SimpleITK reports inf there), 0 when only one is.
        spatial_dims: 2 or 3, only needed for ``(B, 1, H, W)`` label maps (default: 3-D when ambiguous).
    """
    empty = resolve_empty(convention, empty)
    p, t, nd = to_masks(pred, target, num_classes, include_background, spatial_dims)
    inter = count_voxels(p & t, nd).to(torch.float64)
    sp, st = count_voxels(p, nd).to(torch.float64), count_voxels(t, nd).to(torch.float64)
    denom = sp + st
    dice = 2.0 * inter / denom.clamp(min=1)
    if empty == "nan":
        dice = torch.where(st > 0, dice, torch.full_like(dice, float("nan")))
    else:
        dice = torch.where(denom > 0, dice, torch.ones_like(dice))
    return dice.to(torch.float32)


__all__ = ["dice_score"]
