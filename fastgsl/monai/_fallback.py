"""The one rule of this layer for what fastgsl cannot reproduce: warn once, then let MONAI itself answer."""
from __future__ import annotations

import warnings

from fastgsl import observe


class FallbackWarning(UserWarning):
    """An argument or input that fastgsl does not reproduce exactly: MONAI's own implementation runs instead."""


_warned: set = set()


def fall_back(name: str, reason: str) -> None:
    """Warn (once per ``(name, reason)`` and process) that MONAI's ``name`` answers this call, and record it."""
    key = (name, reason)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"fastgsl.monai.{name}: {reason} is not reproduced by fastgsl; MONAI's own {name} computes "
                      "this call (and every later one like it)", FallbackWarning, stacklevel=4)
    observe.note("monai", "monai")


def answered() -> None:
    """Record that fastgsl's engines answered this call."""
    observe.note("monai", "fastgsl")
