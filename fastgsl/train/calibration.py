"""The calibration of the built-in liver task: train **Dice-CE alone** at the main job's budget on a variant of
the generator's :class:`~fastgsl.train.synthetic.LiverDesign`, and report what the baseline reaches.

The built-in task is judged on the baseline only, never on a boundary loss's numbers:

    python -m fastgsl.train.calibration                                  # the current design
    python -m fastgsl.train.calibration --set neighbour_hu=86,98 --name near-neighbour

Each ``--set field=lo,hi`` (or ``field=value``; radii as ``lo,hi;lo,hi;lo,hi``) replaces one range of the design.
The variant's data are generated in ``<out>/data`` and the run is the main job's (``TrainConfig()`` defaults)
with ``--losses dice_ce``.  The summary gives Dice, HD95 in mm and in in-plane voxels of the preprocessed
spacing, its per-case std over its mean, and the missed and spurious components that drive it.  The runs that
chose the shipped design are listed in ``fastgsl/train/README.md`` ("Calibration of the built-in task").
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from fastgsl.train import synthetic
from fastgsl.train.config import TrainConfig
from fastgsl.train.run import run_experiment

#: the targets of the baseline (Dice-CE) on the built-in task
DICE_RANGE = (0.90, 0.95)
MIN_HD95_VOXELS = 3.0
MIN_STD_OVER_MEAN = 0.5


def parse_value(text: str):
    """``"a"`` -> float, ``"a,b"`` -> (a, b), ``"a,b;c,d;..."`` -> ((a, b), (c, d), ...); integers stay integers."""
    def num(x):
        return int(x) if x.strip().lstrip("-").isdigit() else float(x)
    if ";" in text:
        return tuple(tuple(num(x) for x in part.split(",")) for part in text.split(";"))
    if "," in text:
        return tuple(num(x) for x in text.split(","))
    return num(text)


def design_from(settings: list) -> synthetic.LiverDesign:
    fields = {f.name for f in dataclasses.fields(synthetic.LiverDesign)}
    changes = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}")
        changes[name] = parse_value(value)
    return dataclasses.replace(synthetic.LiverDesign(), **changes)


def summarize(rows: list, spacing) -> dict:
    """The baseline's figures against the targets (module docstring)."""
    dice = np.array([r["dice"] for r in rows], float)
    hd = np.array([r["hd95"] for r in rows], float)
    voxel = float(min(spacing))
    mean, std = float(hd.mean()), float(hd.std())
    out = {"cases": len(rows), "dice": float(dice.mean()), "hd95_mm": mean, "hd95_std_mm": std,
           "hd95_voxels": mean / voxel, "std_over_mean": std / mean if mean > 0 else math.nan,
           "in_plane_voxel_mm": voxel,
           "missed": int(sum(r["missed"] for r in rows)), "spurious": int(sum(r["spurious"] for r in rows))}
    # the cases whose HD95 the targets are about, and how many of them an unmatched component explains alone
    large = [r for r in rows if r["hd95"] >= MIN_HD95_VOXELS * voxel]
    out["cases_hd95_over_3_voxels"] = len(large)
    out["of_which_unmatched_over_5pct"] = sum(max(r["missed_fraction"], r["spurious_fraction"]) > 0.05
                                              for r in large)
    out["targets_met"] = {"dice": DICE_RANGE[0] <= out["dice"] <= DICE_RANGE[1],
                          "hd95_voxels": out["hd95_voxels"] >= MIN_HD95_VOXELS,
                          "std_over_mean": out["std_over_mean"] >= MIN_STD_OVER_MEAN}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m fastgsl.train.calibration", description=__doc__.split("\n\n")[0])
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="one range of LiverDesign")
    p.add_argument("--name", default="current", help="the variant's name (its folder under --out)")
    p.add_argument("--out", default="runs/calibration")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: the main job's, 42)")
    p.add_argument("--num-cases", type=int, help="generated cases (default: the main job's, 24; half held out)")
    args = p.parse_args(argv)
    design = design_from(args.set)
    folder = Path(args.out) / args.name
    cfg = TrainConfig(losses=["dice_ce"], data_dir=str(folder / "data"), out=str(folder), progress=False,
                      seeds=args.seeds)
    if args.num_cases:
        cfg.num_cases = args.num_cases
    shipped = synthetic.LIVER_DESIGN
    synthetic.LIVER_DESIGN = design   # the generator reads its design here
    try:
        res = run_experiment(cfg)
    finally:
        synthetic.LIVER_DESIGN = shipped
    summary = summarize(res.rows, res.spacing)
    summary.update(name=args.name, design=dataclasses.asdict(design), minutes=res.seconds / 60,
                   per_case=[(r["case"], round(r["dice"], 4), round(r["hd95"], 3), r["missed"], r["spurious"],
                              round(r["missed_fraction"], 4), round(r["spurious_fraction"], 4)) for r in res.rows])
    (folder / "calibration.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("design", "per_case")}, indent=2))
    for row in summary["per_case"]:
        print("  ", *row)
    return summary


if __name__ == "__main__":
    main()
