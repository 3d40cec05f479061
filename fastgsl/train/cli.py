"""Command line of ``python -m fastgsl.train`` (and the ``fastgsl-train`` console script).

Flags left out keep the preset's value (``--preset cpu``, the default, or ``paper``; ``fastgsl.train.config``).
"""
from __future__ import annotations

import argparse

from fastgsl.train.config import PRESETS, TrainConfig, preset
from fastgsl.train.preprocess import TASKS


def _list(text: str) -> list:
    return [t for t in text.replace(",", " ").split() if t]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastgsl.train",
        description="Train nnU-Net (MONAI DynUNet) with the Generalized Surface Loss paper's losses and compare "
                    "Dice, HD95 and ASD with the paper's Table 1.  Without arguments: the built-in liver data, "
                    "Dice-CE vs BL vs GSL, about ten minutes on two CPU cores.  DDP: launch with torchrun.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, argument_default=argparse.SUPPRESS)
    a = p.add_argument
    a("--preset", choices=list(PRESETS), default="cpu",
      help="size of the run (flags below override it); smoke: seconds, to check that a dataset goes through; "
           "validate: the longer validation (about an hour on two CPU cores: more cases, 2 seeds, more epochs)")
    a("--losses", nargs="+", help="any of dl dice_ce gdl hl bl gsl (space or comma separated)")
    a("--schedule", nargs="+", dest="schedules",
      help="alpha schedule(s) of the boundary losses: linear, step:H, cosine, constant:A; several give Table 2")
    a("--warmup", type=int, help="epochs with alpha held at 1 before the schedule (the authors' code: 5)")
    a("--task", choices=list(TASKS),
      help="default: the built-in liver task, or what a --data folder defines (nnU-Net regions, BraTS label names: "
           "regions; otherwise one softmax class per label). liver: the paper's binary LiTS task (every label > 0); "
           "tumour: BraTS WT/TC/ET regions from the label names; multiclass; regions")
    a("--binary", action="store_true", help="train foreground (every label > 0) against background")
    a("--data", help="'builtin' (generated on first use) or a dataset folder in the MSD or nnU-Net v2 raw layout "
                     "(dataset.json, imagesTr, labelsTr)")
    a("--data-dir", help="where the built-in data is generated")
    a("--num-cases", type=int, help="number of generated cases (built-in data)")
    a("--folds", type=int, help="k of the k-fold cross-validation")
    a("--fold", nargs="+", dest="fold_ids", help="which folds to run (0-based), or 'all'")
    a("--epochs", type=int)
    a("--iters-per-epoch", type=int, help="optimiser steps per epoch (nnU-Net: 250)")
    a("--patch-size", type=int, nargs=3, metavar=("X", "Y", "Z"))
    a("--batch-size", type=int, help="global batch, split over the DDP processes (paper: 2)")
    a("--lr", type=float, help="Adam learning rate (paper: 3e-4)")
    a("--seed", type=int, help="draws the fold split, and is the training seed without --seeds (paper: 42)")
    a("--seeds", nargs="+", help="training seeds (e.g. 0,1): each trains every loss again on the same split; the "
                                "statistics pair the losses per (seed, fold, case) and average each case over seeds")
    a("--dtm", choices=["on-the-fly", "precomputed"],
      help="DTM of each augmented patch computed by the loss, or of the whole volume, cropped")
    a("--deep-supervision", action="store_true", help="nnU-Net deep supervision")
    a("--amp", choices=["bf16", "fp16", "off"], help="autocast dtype (fp16 adds a GradScaler)")
    a("--filters", type=int, help="filters of the first level (nnU-Net: 32), doubled per level")
    a("--max-filters", type=int, help="cap on the filters (nnU-Net: 320)")
    a("--val-every", type=int, help="held-out evaluation every N epochs (and always at the end)")
    a("--workers", type=int, help="data-loader worker processes per rank")
    a("--threads", type=int, help="torch intra-op threads per process (default 1: a CPU run repeats bit for bit on "
                                  "any machine; 0: torch's default, one per core)")
    a("--sw-batch-size", type=int, help="windows per forward pass of the sliding-window inference")
    a("--device", choices=["auto", "cpu", "cuda"])
    a("--out", help="run folder")
    a("--resume", action="store_true", help="continue from the run folder's checkpoints")
    a("--no-progress", action="store_false", dest="progress", help="no progress bars")
    return p


def parse_config(argv=None) -> TrainConfig:
    args = vars(build_parser().parse_args(argv))
    name = args.pop("preset", "cpu")
    values = TrainConfig().as_dict()
    values.update(preset(name, args.get("task", "liver" if args.get("data", "builtin") == "builtin" else None)))
    if "losses" in args:
        args["losses"] = [x for t in args["losses"] for x in _list(t)]
    if "schedules" in args:
        args["schedules"] = [x for t in args["schedules"] for x in _list(t)]
    if "fold_ids" in args:
        ids = [x for t in args["fold_ids"] for x in _list(t)]
        try:
            args["fold_ids"] = None if ids == ["all"] else [int(x) for x in ids]
        except ValueError:
            raise SystemExit(f"--fold takes fold numbers or 'all', got {' '.join(ids)}")
    if "seeds" in args:
        text = [x for t in args["seeds"] for x in _list(t)]
        try:
            args["seeds"] = [int(x) for x in text]
        except ValueError:
            raise SystemExit(f"--seeds takes integers, got {' '.join(text)}")
    if "patch_size" in args:
        args["patch_size"] = list(args["patch_size"])
    values.update(args)
    return TrainConfig(**values).check()
