"""Schedules for the weight ``alpha`` of the composite loss (paper eq. 8), eqs. 14-16 as written.

Each schedule is a callable ``schedule(epoch) -> alpha`` with ``epoch`` the 0-based index ``t`` and ``T`` the
total number of epochs.  ``warmup_epochs = w`` holds ``alpha = 1`` for ``t < w`` (the authors' code holds it for
5 epochs) and then runs the equation on the remaining epochs: ``alpha(t) = f(t - w, T - w)``.  Past ``T`` the
value stays at ``f(T) = 0``.
"""
from __future__ import annotations

import math


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class _Schedule:
    def __init__(self, total_epochs: int, warmup_epochs: int = 0):
        self.total_epochs = _check_int("total_epochs", total_epochs, 1)
        self.warmup_epochs = _check_int("warmup_epochs", warmup_epochs, 0)
        if self.warmup_epochs >= self.total_epochs:
            raise ValueError(f"warmup_epochs ({warmup_epochs}) must be smaller than total_epochs ({total_epochs})")

    def __call__(self, epoch: int) -> float:
        _check_int("epoch", epoch, 0)
        if epoch < self.warmup_epochs:
            return 1.0
        T = self.total_epochs - self.warmup_epochs
        return self._alpha(min(epoch - self.warmup_epochs, T), T)

    def _alpha(self, t: int, T: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class LinearSchedule(_Schedule):
    """Eq. 14: ``alpha(t) = 1 - t / T``."""

    def _alpha(self, t, T):
        return 1.0 - t / T


class StepSchedule(_Schedule):
    """Eq. 15: ``alpha(t) = 1 - floor(t / h) / N_h`` with ``N_h = floor(T / h)`` and step length ``h >= 1``."""

    def __init__(self, total_epochs: int, step_length: int, warmup_epochs: int = 0):
        super().__init__(total_epochs, warmup_epochs)
        self.step_length = _check_int("step_length", step_length, 1)
        if step_length > total_epochs - warmup_epochs:
            raise ValueError(f"step_length ({step_length}) must not exceed the decaying epochs "
                             f"({total_epochs - warmup_epochs})")

    def _alpha(self, t, T):
        return 1.0 - (t // self.step_length) / (T // self.step_length)


class CosineSchedule(_Schedule):
    """Eq. 16: ``alpha(t) = (1 + cos(pi t / T)) / 2``."""

    def _alpha(self, t, T):
        return 0.5 * (1.0 + math.cos(math.pi * t / T))


class ConstantSchedule:
    """``alpha(t) = alpha`` for every epoch."""

    def __init__(self, alpha: float):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)

    def __call__(self, epoch: int) -> float:
        _check_int("epoch", epoch, 0)
        return self.alpha

    def __repr__(self):
        return f"ConstantSchedule(alpha={self.alpha!r})"


__all__ = ["ConstantSchedule", "LinearSchedule", "StepSchedule", "CosineSchedule"]
