"""The fastgsl trainers for nnU-Net v2, by name (``nnUNetv2_train DATASET CONFIG FOLD -tr NAME``).

None of these names exists among nnunetv2's built-in trainers, which nnU-Net searches first.
"""
from fastgsl.nnunet.trainer import nnUNetTrainerFastBase


class nnUNetTrainerFastDiceCE(nnUNetTrainerFastBase):
    """nnU-Net's Dice + CE (``DC_and_CE_loss`` with ``MemoryEfficientSoftDiceLoss``), equal value, fused."""

    boundary = None


class nnUNetTrainerFastGSL(nnUNetTrainerFastBase):
    """Dice-CE + Generalized Surface Loss (eq. 12, eq. 13 class weights), linear schedule (eq. 14)."""

    boundary = "gsl"


class nnUNetTrainerFastGSLStep5(nnUNetTrainerFastGSL):
    """Dice-CE + GSL, step schedule with h = 5 epochs (eq. 15; the paper's best on LiTS)."""

    schedule, step_length = "step", 5


class nnUNetTrainerFastGSLStep25(nnUNetTrainerFastGSL):
    """Dice-CE + GSL, step schedule with h = 25 epochs (eq. 15)."""

    schedule, step_length = "step", 25


class nnUNetTrainerFastGSLCosine(nnUNetTrainerFastGSL):
    """Dice-CE + GSL, cosine schedule (eq. 16)."""

    schedule = "cosine"


class nnUNetTrainerFastGSLWarmup(nnUNetTrainerFastGSL):
    """Dice-CE + GSL, linear schedule after alpha is held at 1 for 5 epochs (the authors' code)."""

    warmup_epochs = 5


class nnUNetTrainerFastBL(nnUNetTrainerFastBase):
    """Dice-CE + boundary loss (eq. 9), linear schedule."""

    boundary = "bl"


class nnUNetTrainerFastHL(nnUNetTrainerFastBase):
    """Dice-CE + one-sided Hausdorff loss (eq. 7, ground-truth DTM only), linear schedule."""

    boundary = "hl"


class nnUNetTrainerFastHL2(nnUNetTrainerFastBase):
    """Dice-CE + two-sided Hausdorff loss (adds the DTM of the thresholded prediction), linear schedule."""

    boundary = "hl2"


__all__ = ["nnUNetTrainerFastDiceCE", "nnUNetTrainerFastGSL", "nnUNetTrainerFastGSLStep5",
           "nnUNetTrainerFastGSLStep25", "nnUNetTrainerFastGSLCosine", "nnUNetTrainerFastGSLWarmup",
           "nnUNetTrainerFastBL", "nnUNetTrainerFastHL", "nnUNetTrainerFastHL2"]
