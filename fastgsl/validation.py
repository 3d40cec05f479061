"""The argument rules of fastgsl's public functions, each written once.

Every public entry point (the losses' constructors and ``forward``, ``fastgsl.dtm``, ``fastgsl.metrics``) checks
its arguments with these helpers at the boundary; the ops below them trust what they are given.  Each helper
raises ``TypeError`` for a wrong kind of value and ``ValueError`` for a wrong value, with a message that names
the argument.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_positive_int(name: str, value) -> int:
    """A positive ``int`` (``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_integer_labels(name: str, labels) -> torch.Tensor:
    """An integer (not bool, float or complex) tensor."""
    check_tensor(name, labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{name} must be an integer tensor, got {labels.dtype}")
    return labels


@dataclass(frozen=True)
class LabelRange:
    """The rule "every label lies in ``[0, num_labels)``", with the words of its error.

    A caller that hands its labels to an op which reads them anyway passes the rule along instead of checking it
    first: the host statistics pass (``fastgsl.ops.voxel_stats``) tests every label as it reads it, so the check
    costs no pass of its own (one ``aminmax`` runs only to word the error, :meth:`raise_outside`); every other path
    calls :meth:`check`.

    Args:
        name: what the labels are called in the error (``"labels"``).
        num_labels: the number of valid labels.
        context: appended to the rule in the error (``" for 4 channels"``).
        error: the exception class raised (the MONAI drop-in raises ``RuntimeError``, as MONAI's ``one_hot`` does).
    """

    name: str
    num_labels: int
    context: str = ""
    error: type = ValueError

    def check(self, labels: torch.Tensor, *, eager: bool = False) -> None:
        """One ``aminmax`` reduction over ``labels``.  On the CPU the result is read at once and a bad label raises
        :attr:`error` with the values found.  On a GPU, reading it would stall the host on every loss call, so the
        check is a device-side assert (``torch._assert_async``) queued behind the reduction: a bad label still
        stops the run, as a CUDA "device-side assert triggered" error at the next synchronisation, without the
        values.  ``eager=True`` (callers that read results back anyway, such as the metrics) or
        ``FASTGSL_LABEL_CHECK=eager`` reads the result on every device instead: a clear error, one sync per call.
        Skipped while ``torch.compile`` traces (a data-dependent check cannot be part of the graph)."""
        if labels.numel() == 0 or torch.compiler.is_compiling():
            return
        lo, hi = torch.aminmax(labels)
        if labels.device.type != "cpu" and not eager and os.environ.get("FASTGSL_LABEL_CHECK", "auto") != "eager":
            torch._assert_async((lo >= 0) & (hi < self.num_labels),
                                f"fastgsl: {self.name} must lie in [0, {self.num_labels}){self.context}")
            return
        self.raise_outside(int(lo), int(hi))

    def raise_outside(self, lo: int, hi: int) -> None:
        """Raise :attr:`error` if the smallest label ``lo`` or the largest ``hi`` breaks the rule."""
        if lo < 0 or hi >= self.num_labels:
            raise self.error(f"{self.name} must lie in [0, {self.num_labels}){self.context}; "
                             f"found values in [{lo}, {hi}]")


def check_label_range(name: str, labels: torch.Tensor, num_labels: int, context: str = "", *,
                      eager: bool = False, error: type[Exception] = ValueError) -> None:
    """Every value of ``labels`` lies in ``[0, num_labels)``: :meth:`LabelRange.check` of that rule."""
    LabelRange(name, num_labels, context, error).check(labels, eager=eager)


def check_spacing(spacing, ndim: int) -> tuple[float, ...]:
    """Voxel spacing per spatial axis, in tensor axis order: None (1), a number (isotropic) or ``ndim`` numbers,
    each positive and finite."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, (str, bytes)):
        raise TypeError(f"spacing must be a number or a sequence of numbers, got {spacing!r}")
    if isinstance(spacing, (int, float)) and not isinstance(spacing, bool):
        spacing = (float(spacing),) * ndim
    try:
        sp = tuple(float(s) for s in spacing)
    except TypeError:
        raise TypeError(f"spacing must be a number or a sequence of numbers, got {spacing!r}") from None
    if len(sp) != ndim:
        raise ValueError(f"spacing has {len(sp)} entries but the data has {ndim} spatial dimensions")
    if any(not math.isfinite(s) or s <= 0 for s in sp):
        raise ValueError(f"spacing must be positive and finite, got {sp}")
    return sp


__all__ = ["check_choice", "check_positive_int", "check_tensor", "check_integer_labels", "LabelRange",
           "check_label_range", "check_spacing"]
