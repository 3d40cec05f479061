"""Test trainers, found by nnU-Net through nnUNet_extTrainer: the fastgsl trainers cut to 2 epochs of 2 iterations
(1 validation iteration) and without mirroring (augmentation and test-time), so that nnU-Net's real loop,
checkpointing, validation and export run in seconds on a CPU."""
import torch

from fastgsl.nnunet import variants


class _Tiny:
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None


class nnUNetTrainerFastGSLTiny(_Tiny, variants.nnUNetTrainerFastGSL):
    pass


class nnUNetTrainerFastDiceCETiny(_Tiny, variants.nnUNetTrainerFastDiceCE):
    pass


class nnUNetTrainerFastBLTiny(_Tiny, variants.nnUNetTrainerFastBL):
    pass


class nnUNetTrainerFastHLTiny(_Tiny, variants.nnUNetTrainerFastHL):
    pass


class nnUNetTrainerFastHL2Tiny(_Tiny, variants.nnUNetTrainerFastHL2):
    pass
