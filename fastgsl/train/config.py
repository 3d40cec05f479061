"""The training configuration and its presets.

``cpu`` (the default, the README's main job): the built-in liver data, Dice-CE, BL and GSL with the linear
schedule, sized to finish in well under fifteen minutes on two CPU cores - small patches, a narrow network,
fold 0 of 2 (12 held-out cases), one training seed, one torch thread.  ``validate``: the same losses and
network, longer - 64 generated cases (32 held out in fold 0 of 2), 60 epochs, three training seeds (42, 43 and
44, on the same split) - meant to fit in an hour on two CPU cores: its table is the validation the README
reports.  ``smoke``: a check, in seconds, that a
dataset goes through training, evaluation and the report (Dice-CE and GSL, 2 epochs of 2 steps, a 16x16x8 patch,
filters 4 to 16); its numbers mean nothing.  ``paper``: the paper's section 2.4 setting - patch 128^3 (BraTS, and
any dataset but LiTS) or 256x256x128 (LiTS), batch 2, Adam 3e-4, seed 42, five folds, nnU-Net's 32-320 filters,
250 iterations per epoch (nnU-Net's default; the paper leaves the epoch count at its code's default), for GPUs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    losses: list = field(default_factory=lambda: ["dice_ce", "bl", "gsl"])
    schedules: list = field(default_factory=lambda: ["linear"])
    warmup: int = 0
    task: str | None = None         # None: the built-in liver task, or the task a --data folder defines
    binary: bool = False
    data: str = "builtin"
    data_dir: str = "runs/data"
    num_cases: int = 24             # built-in data only
    folds: int = 2
    fold_ids: list | None = field(default_factory=lambda: [0])   # None: every fold
    epochs: int = 40
    iters_per_epoch: int = 25
    patch_size: list = field(default_factory=lambda: [32, 32, 16])
    batch_size: int = 2             # global batch, split over DDP processes
    lr: float = 3e-4
    seed: int = 42                  # draws the fold split; the training seed when ``seeds`` is None
    seeds: list | None = None       # training seeds, each a full replication on the same split
    dtm: str = "on-the-fly"
    deep_supervision: bool = False
    amp: str = "off"
    filters: int = 8
    max_filters: int = 64
    val_every: int = 10
    sw_batch_size: int = 8          # windows per forward pass in sliding-window inference
    workers: int = 0
    threads: int = 1                # torch intra-op threads per process; 0: torch's default (one per core)
    device: str = "auto"
    out: str = "runs/fastgsl"
    resume: bool = False
    progress: bool = True

    def check(self) -> "TrainConfig":
        from fastgsl.train.objectives import LOSS_LABELS
        bad = [x for x in self.losses if x not in LOSS_LABELS]
        if bad or not self.losses:
            raise ValueError(f"--losses {bad or '(none)'}: choose from {', '.join(LOSS_LABELS)}")
        if len(set(self.losses)) != len(self.losses):
            raise ValueError(f"--losses lists a loss twice: {self.losses}")
        if self.dtm not in ("on-the-fly", "precomputed"):
            raise ValueError(f"--dtm must be on-the-fly or precomputed, got {self.dtm!r}")
        if self.amp not in ("bf16", "fp16", "off"):
            raise ValueError(f"--amp must be bf16, fp16 or off, got {self.amp!r}")
        from fastgsl.train.preprocess import TASKS
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.data == "builtin" and self.task not in (None, "liver", "tumour"):
            raise ValueError(f"--task {self.task} needs --data: the built-in data are the liver and tumour tasks")
        if self.binary and self.task not in (None, "liver"):
            raise ValueError(f"--binary contradicts --task {self.task}")
        for name in ("epochs", "iters_per_epoch", "batch_size", "filters", "max_filters", "val_every", "sw_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0: torch's default), got {self.threads}")
        if len(self.patch_size) != 3 or any(p < 4 for p in self.patch_size):
            raise ValueError(f"--patch-size needs three sizes of at least 4 voxels, got {self.patch_size}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.fold_ids is not None and any(not 0 <= f < self.folds for f in self.fold_ids):
            raise ValueError(f"--fold {self.fold_ids}: folds are numbered 0..{self.folds - 1}")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)
                                       or not all(isinstance(x, int) for x in self.seeds)):
            raise ValueError(f"--seeds needs distinct integers, got {self.seeds}")
        if self.warmup < 0 or self.warmup >= self.epochs:
            raise ValueError(f"--warmup must be in [0, epochs), got {self.warmup}")
        return self

    @property
    def training_seeds(self) -> list:
        return [self.seed] if self.seeds is None else list(self.seeds)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PAPER_PATCH = {"liver": [256, 256, 128], "tumour": [128, 128, 128]}
PRESETS = ("cpu", "paper", "smoke", "validate")


def preset(name: str, task: str | None = "liver") -> dict:
    """Field values of a preset (command-line flags override them)."""
    if name == "cpu":
        if task == "tumour":
            return {"patch_size": [32, 32, 32], "num_cases": 20, "folds": 4}
        return {}
    if name == "validate":
        if task == "tumour":
            return {"patch_size": [32, 32, 32], "num_cases": 32, "folds": 2, "seeds": [42, 43], "epochs": 60,
                    "val_every": 15}
        return {"num_cases": 64, "seeds": [42, 43, 44], "epochs": 60, "val_every": 15}
    if name == "smoke":
        return {"losses": ["dice_ce", "gsl"], "num_cases": 4, "epochs": 2, "iters_per_epoch": 2,
                "patch_size": [16, 16, 8], "filters": 4, "max_filters": 16, "val_every": 1, "sw_batch_size": 64}
    if name == "paper":
        return {"patch_size": list(PAPER_PATCH["liver" if task == "liver" else "tumour"]), "folds": 5,
                "fold_ids": None, "filters": 32,
                "max_filters": 320, "iters_per_epoch": 250, "epochs": 1000, "val_every": 50,
                "deep_supervision": True, "amp": "bf16", "workers": 8, "threads": 0, "num_cases": 100,
                "sw_batch_size": 2,
                "losses": ["dl", "dice_ce", "gdl", "hl", "bl", "gsl"]}
    raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
