"""The metric conventions and the empty-mask policies: their names, the default policy of each convention, and the
values a policy puts where a mask is absent (``fastgsl.metrics``' module docstring states them per metric)."""
from __future__ import annotations

import math

import torch

from fastgsl.validation import check_choice

#: ``convention=``: whose definitions of the surfaces and of the directed distance sets the metrics follow
METRIC_CONVENTIONS = ("monai", "paper")
#: ``empty=``: what a metric is where one or both masks are absent
EMPTY_POLICIES = ("nan", "paper")


def resolve_empty(convention, empty) -> str:
    """Check ``convention`` and ``empty``; ``empty=None`` is the convention's default (``"nan"`` for ``"monai"``,
    ``"paper"`` for ``"paper"``)."""
    check_choice("convention", convention, METRIC_CONVENTIONS)
    if empty is None:
        return "nan" if convention == "monai" else "paper"
    return check_choice("empty", empty, EMPTY_POLICIES)


def apply_policy(value, present_p, present_t, empty, both_nan, one_nan, both_paper, one_paper) -> torch.Tensor:
    """Overwrite the (B, C) float64 ``value`` where pred and/or target are absent: with ``both_*`` where both are,
    ``one_*`` where one is, ``*_nan`` or ``*_paper`` by the ``empty`` policy (numbers, or a (B, C) tensor)."""
    both = ~present_p & ~present_t
    one = present_p ^ present_t
    if empty == "nan":
        b, o = both_nan, one_nan
    else:
        b, o = both_paper, one_paper
    value = torch.where(both, torch.as_tensor(b, dtype=torch.float64, device=value.device), value)
    return torch.where(one, o if isinstance(o, torch.Tensor) else torch.as_tensor(o, dtype=torch.float64,
                                                                                  device=value.device), value)


def all_absent(B, C, device, empty, nan_value, paper_value) -> torch.Tensor:
    """The (B, C) float32 result when no item has any foreground: every pair has both masks absent."""
    value = nan_value if empty == "nan" else paper_value
    return torch.full((B, C), value, dtype=torch.float32, device=device)


def diagonals(spacings, shape, device) -> torch.Tensor:
    """``(B, 1)`` float64 image diagonals ``sqrt(sum_i (n_i * spacing_i)^2)``, the ``"paper"`` policy's distance
    when one mask is absent."""
    diag = [math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sp))) for sp in spacings]
    return torch.tensor(diag, dtype=torch.float64, device=device)[:, None]


__all__ = ["METRIC_CONVENTIONS", "EMPTY_POLICIES", "resolve_empty", "apply_policy", "all_absent", "diagonals"]
