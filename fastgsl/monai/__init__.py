"""A drop-in for MONAI 1.6's losses and metrics: swap the import, keep every argument, get MONAI's numbers.

``from monai.losses import DiceCELoss`` becomes ``from fastgsl.monai.losses import DiceCELoss`` (and likewise for
``monai.metrics``); nothing else in the caller's code changes.  Each class subclasses its MONAI original, so
constructor signatures, defaults, validation, attributes, ``state_dict`` keys and ``isinstance`` checks are
MONAI's own; only the computation is replaced by fastgsl's engines (the fused statistics / gradient passes, the
batched exact EDT, the batched surface metrics).

Where fastgsl cannot reproduce MONAI's number exactly (an argument or value listed in each class's docstring and
in README.md, "Coming from MONAI"), the call runs MONAI's own code instead, after a one-time
``FallbackWarning``; a number is never silently different.  ``fastgsl.observe.engines()`` records an ``("monai",
"fastgsl")`` or ``("monai", "monai")`` event for every call of this layer, telling which one answered.

This package requires MONAI; ``import fastgsl`` never imports it.
"""
