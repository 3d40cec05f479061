"""MONAI's input handling for the losses, in MONAI's order, producing what fastgsl's statistics pass reads.

MONAI activates the prediction (``sigmoid``, ``softmax`` or ``other_act``), one-hot encodes the target
(``to_onehot_y``), drops channel 0 (``include_background=False``) and checks the shapes, warning where a
single-channel input makes an option meaningless.  Here the same steps, warnings and errors happen, but nothing of
the input's size is built: the activation stays a name for the fused pass (except a callable ``other_act``, which
must run in PyTorch), the one-hot target stays an integer label map, and channel 0 is dropped from the ``(B, C, K)``
statistics rather than from the tensors.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from fastgsl.validation import LabelRange


@dataclass
class Prepared:
    """One loss call's inputs: ``x`` is what the pass activates with ``act``; ``target`` is an int64 label map
    ``(B, *spatial)`` or a float ``(B, C, *spatial)`` tensor; channels ``first:`` count.  ``labels``: the range a
    label map must lie in, for the loss's first statistics pass to check as it reads the labels."""

    x: torch.Tensor
    act: str
    target: torch.Tensor
    first: int
    #: dtype of the target as MONAI holds it after ``to_onehot_y`` (its one-hot tensors are float32)
    target_dtype: torch.dtype = torch.float32
    labels: LabelRange | None = None

    @property
    def is_labels(self) -> bool:
        return not self.target.dtype.is_floating_point

    @property
    def spatial_dims(self) -> int:
        return self.x.ndim - 2

    @property
    def num_voxels(self) -> int:
        return self.x[0, 0].numel()


def activation(loss, input: torch.Tensor):
    """``(x, act)``: the tensor the pass reads and the activation it applies, as MONAI's flags select."""
    if loss.sigmoid:
        return input, "sigmoid"
    if loss.softmax:
        if input.shape[1] == 1:
            warnings.warn("single channel prediction, `softmax=True` ignored.", stacklevel=4)
        else:
            return input, "softmax"
    if loss.other_act is not None:
        # an arbitrary callable, possibly not elementwise: it runs as given and the pass reads its output
        return loss.other_act(input), "none"
    return input, "none"


def prepare(loss, input: torch.Tensor, target: torch.Tensor, shape_message: str = "different shape") -> Prepared:
    """Validate ``(input, target)`` as MONAI's ``forward`` does (same warnings, same exception types)."""
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"input and target must be torch.Tensors, got {type(input).__name__} and "
                        f"{type(target).__name__}")
    if not input.dtype.is_floating_point:
        raise TypeError(f"input must be a floating-point tensor, got {input.dtype}")
    if input.ndim < 3:
        raise ValueError(f"input must be (B, C, *spatial) with at least one spatial dimension, got shape "
                         f"{tuple(input.shape)}")
    x, act = activation(loss, input)
    C = input.shape[1]
    labels = rule = None
    if loss.to_onehot_y:
        if C == 1:
            warnings.warn("single channel prediction, `to_onehot_y=True` ignored.", stacklevel=3)
        else:
            if target.ndim < 2 or target.shape[1] != 1:
                raise AssertionError("labels should have a channel with length equal to one.")
            labels = target[:, 0].long()  # MONAI's one_hot casts with .long() too
            # checked by the statistics pass as it reads the labels (on a GPU a device-side assert), so that a step
            # neither waits on the host nor reads the labels twice; a call whose shapes are also wrong therefore
            # raises the shape error, where MONAI's one_hot would raise first
            rule = LabelRange("to_onehot_y: target labels", C, f" for {C} input channels", RuntimeError)
    first = 0
    if not loss.include_background:
        if C == 1:
            warnings.warn("single channel prediction, `include_background=False` ignored.", stacklevel=3)
        else:
            first = 1
    t_shape = (target.shape[0], C) + tuple(target.shape[2:]) if labels is not None else tuple(target.shape)
    if len(t_shape) < 2 or tuple(t_shape[:1] + t_shape[2:]) != tuple(input.shape[:1] + input.shape[2:]) \
            or t_shape[1] != C:
        got = torch.Size((t_shape[0], t_shape[1] - first) + tuple(t_shape[2:])) if len(t_shape) >= 2 else \
            torch.Size(t_shape)
        want = torch.Size((input.shape[0], C - first) + tuple(input.shape[2:]))
        raise AssertionError(f"ground truth has {shape_message} ({got}) from input ({want})")
    if target.device != input.device:
        raise ValueError(f"input and target are on different devices: {input.device} and {target.device}")
    if labels is not None:
        t, t_dtype = labels, torch.float32
    elif target.dtype.is_floating_point:
        t, t_dtype = target, target.dtype
    else:
        t, t_dtype = target.to(input.dtype), target.dtype  # an integer or bool one-hot tensor: values, not labels
    return Prepared(x, act, t, first, t_dtype, rule)


def binary_target(p: Prepared) -> bool:
    """True when every target value is 0 or 1 (always for a label map)."""
    if p.is_labels:
        return True
    t = p.target
    return not bool(((t != 0) & (t != 1)).any())


def in_unit_interval(p: Prepared) -> bool:
    """True when the activated prediction lies in [0, 1] (always after a sigmoid or softmax)."""
    if p.act != "none":
        return True
    return bool(((p.x >= 0) & (p.x <= 1)).all())


def reduce(f: torch.Tensor, reduction: str, spatial_dims: int) -> torch.Tensor:
    """MONAI's loss reduction; ``"none"`` keeps a shape broadcastable against the input, as MONAI does."""
    if reduction == "mean":
        return f.mean()
    if reduction == "sum":
        return f.sum()
    if reduction == "none":
        return f.view(list(f.shape[0:2]) + [1] * spatial_dims)
    raise ValueError(f'Unsupported reduction: {reduction}, available options are ["mean", "sum", "none"].')
