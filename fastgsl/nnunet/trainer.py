"""The nnU-Net v2 trainer behind every fastgsl trainer: nnU-Net's ``nnUNetTrainer`` with fastgsl's loss.

Everything but the loss is nnU-Net's: plans, data loading and augmentation, network, optimiser, AMP,
``nnUNet_compile`` (which compiles the network; the loss runs eagerly, its work being fastgsl's own kernels),
DDP, validation and export.  What the subclass changes:

* ``_build_loss``: :class:`fastgsl.nnunet.loss.NNUNetLoss` with the plans' ``batch_dice`` and spacing, the
  deep-supervision scales and weights of nnU-Net itself (read off the loss nnU-Net would have built), sigmoid over
  nnU-Net's region targets when the dataset defines regions, and for the GSL the eq. 13 class weights computed
  once from the voxel counts of the training split of the fold.
* ``on_train_epoch_start``: sets ``alpha = schedule(epoch)`` and writes it to nnU-Net's log.

An ignore label is refused with an error: fastgsl's losses have no voxel mask.

Subclasses choose with class attributes: ``boundary`` (None or one of ``fastgsl.nnunet.loss.BOUNDARY_TERMS``),
``schedule`` (``"linear"``, ``"step"``, ``"cosine"``), ``step_length`` (h of eq. 15) and ``warmup_epochs``
(alpha held at 1 first; the authors' code uses 5).  ``T`` of the schedule is the trainer's ``num_epochs``.
"""
from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from fastgsl.nnunet.loss import NNUNetLoss
from fastgsl.schedules import CosineSchedule, LinearSchedule, StepSchedule
from fastgsl.weights import class_weights, count_class_voxels

SCHEDULES = ("linear", "step", "cosine")


class nnUNetTrainerFastBase(nnUNetTrainer):
    """nnU-Net's trainer with a fastgsl loss (module docstring); use one of its subclasses."""

    boundary: str | None = None
    schedule: str = "linear"
    step_length: int = 5
    warmup_epochs: int = 0

    def _build_loss(self):
        lm = self.label_manager
        if lm.has_ignore_label:
            raise ValueError(f"{type(self).__name__}: the dataset has an ignore label ({lm.ignore_label}), which "
                             "fastgsl's losses do not support (they have no voxel mask); train it with nnU-Net's "
                             "own nnUNetTrainer, or relabel the ignored voxels")
        reference = super()._build_loss()  # nnU-Net's own loss: the source of its deep-supervision weights
        ds_weights = list(reference.weight_factors) if isinstance(reference, DeepSupervisionWrapper) else None
        ds_scales = self._get_deep_supervision_scales()
        if (ds_scales is None) != (ds_weights is None):
            raise RuntimeError("nnU-Net's deep-supervision scales and loss weights disagree")
        weights = self._gsl_class_weights() if self.boundary == "gsl" else None
        loss = NNUNetLoss(num_classes=lm.num_segmentation_heads, spacing=self.configuration_manager.spacing,
                          ds_scales=ds_scales, ds_weights=ds_weights, boundary=self.boundary,
                          schedule=self._alpha_schedule() if self.boundary else None, regions=lm.has_regions,
                          batch_dice=self.configuration_manager.batch_dice, class_weights=weights, ddp=self.is_ddp)
        self.print_to_log_file(f"fastgsl loss: boundary term {self.boundary}, schedule "
                               f"{loss.scales[0].composite.schedule if self.boundary else None}, batch_dice "
                               f"{self.configuration_manager.batch_dice}, regions {lm.has_regions}, spacing per "
                               f"scale {[tuple(round(v, 4) for v in s) for s in loss.spacings]}, "
                               f"scale weights {[round(w, 4) for w in loss.weights]}")
        return loss

    def _alpha_schedule(self):
        if self.schedule == "linear":
            return LinearSchedule(self.num_epochs, warmup_epochs=self.warmup_epochs)
        if self.schedule == "cosine":
            return CosineSchedule(self.num_epochs, warmup_epochs=self.warmup_epochs)
        if self.schedule == "step":
            return StepSchedule(self.num_epochs, self.step_length, warmup_epochs=self.warmup_epochs)
        raise ValueError(f"{type(self).__name__}.schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    def _gsl_class_weights(self) -> torch.Tensor:
        """Eq. 13 weights from the voxel counts of this fold's training cases (preprocessed segmentations)."""
        lm = self.label_manager
        tr_keys, _ = self.do_split()
        dataset = infer_dataset_class(self.preprocessed_dataset_folder)(self.preprocessed_dataset_folder, tr_keys)
        counts = torch.zeros(lm.num_segmentation_heads, dtype=torch.int64)
        for key in dataset.identifiers:
            seg = np.asarray(dataset.load_case(key)[1][:])
            seg = np.where(seg < 0, 0, seg)  # nnU-Net's -1 outside the cropped nonzero region is background
            if lm.has_regions:
                counts += torch.tensor([int(np.isin(seg, r).sum()) for r in lm.foreground_regions])
            else:
                counts += count_class_voxels(torch.from_numpy(seg.astype(np.int64)), lm.num_segmentation_heads)
        w = class_weights(counts)
        self.print_to_log_file(f"GSL class weights (eq. 13) from {len(dataset.identifiers)} training cases: voxel "
                               f"counts {counts.tolist()}, weights {[round(v, 6) for v in w.tolist()]}")
        return w

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        alpha = self.loss.set_epoch(self.current_epoch)
        self.print_to_log_file(f"alpha (weight of the region term): {np.round(alpha, decimals=5)}")
