"""MONAI ``compute_dice`` and ``DiceMetric``, vectorised over the batch with :func:`fastgsl.metrics.dice_score`."""
from __future__ import annotations

import torch
from monai.metrics import meandice as _monai
from monai.metrics.utils import create_ignore_mask

from fastgsl import metrics as _fm
from fastgsl.monai._fallback import answered, fall_back


def compute_dice(y_pred: torch.Tensor, y: torch.Tensor, include_background: bool = True, ignore_empty: bool = True,
                 num_classes: int | None = None, per_component: bool = False,
                 ignore_index: int | None = None) -> torch.Tensor:
    """MONAI 1.6 ``monai.metrics.compute_dice``: same arguments, ``(B, C')`` float32, same numbers.

    ``Dice = 2 |P n T| / (|P| + |T|)`` per (item, class), MONAI's reading of the inputs: a one-hot ``y_pred`` is
    ``y_pred != 0`` per channel, a one-channel one is a label map (``y_pred == c``, ``num_classes`` channels); the
    channels are ``1..`` without background, and ``[1]`` for a single class.  Empty ground truth: nan with
    ``ignore_empty``, else 1 if the prediction is empty too and 0 if not.  ``ignore_index`` masks voxels as MONAI's
    ``create_ignore_mask`` does.  The batch is one vectorised count instead of MONAI's per-(item, class) loop.

    Falls back to MONAI (one-time ``FallbackWarning``) for ``per_component=True`` and for a soft ground truth
    (values other than 0 and 1), which MONAI sums as weights.
    """
    if per_component:
        fall_back("compute_dice", "per_component=True")
        return _monai.compute_dice(y_pred, y, include_background, ignore_empty, num_classes, per_component,
                                   ignore_index)
    n_pred_ch = y_pred.shape[1] if num_classes is None else num_classes
    first = 0 if include_background else 1
    channels = list(range(first, n_pred_ch)) if n_pred_ch > 1 else [1]
    shape = (1, len(channels)) + (1,) * (y_pred.ndim - 2)
    cls = torch.tensor(channels, device=y_pred.device).view(shape)
    p = (y_pred[:, :1] == cls) if y_pred.shape[1] == 1 else y_pred[:, channels].bool()
    t = (y[:, :1] == cls.to(y.device)) if y.shape[1] == 1 else y[:, channels]
    mask = create_ignore_mask(y, ignore_index)
    if mask is not None:
        p, t = p & mask.bool(), t * mask
    if t.dtype != torch.bool:
        if bool(((t != 0) & (t != 1)).any()):
            fall_back("compute_dice", "a soft (non-binary) ground truth")
            return _monai.compute_dice(y_pred, y, include_background, ignore_empty, num_classes, per_component,
                                       ignore_index)
        t = t != 0
    answered()
    return _fm.dice_score(p, t, include_background=True, empty="nan" if ignore_empty else "paper")


class DiceMetric(_monai.DiceMetric):
    """MONAI 1.6 ``monai.metrics.DiceMetric`` (a MONAI ``CumulativeIterationMetric``), each batch computed by
    :func:`compute_dice` above; ``aggregate()`` (with ``return_with_label``), ``reset()``, ``get_not_nans`` are
    MONAI's."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        dims = y_pred.ndimension()
        if dims < 3:
            raise ValueError(f"y_pred should have at least 3 dimensions (batch, channel, spatial), got {dims}.")
        return compute_dice(y_pred, y, include_background=self.include_background, ignore_empty=self.ignore_empty,
                            num_classes=self.num_classes, per_component=self.per_component,
                            ignore_index=self.ignore_index)
