"""Drop-ins for ``monai.losses``: ``from fastgsl.monai.losses import DiceCELoss`` (see :mod:`fastgsl.monai`)."""
from fastgsl.monai.losses.dice import DiceLoss, GeneralizedDiceLoss
from fastgsl.monai.losses.dice_ce import DiceCELoss
from fastgsl.monai.losses.hausdorff import HausdorffDTLoss, LogHausdorffDTLoss

__all__ = ["DiceLoss", "DiceCELoss", "GeneralizedDiceLoss", "HausdorffDTLoss", "LogHausdorffDTLoss"]
