"""The experiment: data, then every (loss, schedule, fold) run, then the report (rank 0 writes it).

Output folder (``--out``)::

    config.json          the configuration of this invocation
    train.log            the log (also printed)
    results.csv          per-case metrics: loss, schedule, seed, fold, case, class, dice, hd95, asd, and the
                         unmatched components (missed, spurious and their voxel fractions)
    results.md           Table 1 (and Table 2) layout, the paper's rows beside ours, means with bootstrap
                         CIs, the paired differences and the verdicts
    predictions.png      ground truth and predictions on an easy, a medium and a hard case (Figs. 3 / 4)
    curves.png           training loss, alpha, held-out Dice and HD95 per epoch
    <loss>[-<schedule>]/[seed<s>/]fold<k>/last.pt, result.json, previews.npz   checkpoints and per-run
                         results (seed<s>/ only with several training seeds)
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fastgsl.train import dataset as ds
from fastgsl.train import distributed, figures, report
from fastgsl.train.config import TrainConfig
from fastgsl.train.loop import RunSpec, train_run
from fastgsl.train.objectives import BOUNDARY_LOSSES, LOSS_LABELS
from fastgsl.train.sampling import pad_case

log = logging.getLogger("fastgsl.train")


@dataclass
class ExperimentResult:
    rows: list
    histories: dict
    markdown: str
    verdicts: list
    seconds: float
    spacing: tuple = ()   # the preprocessed cases' spacing (mm), the one the metrics are in


def setup_logging(out: Path, is_main: bool) -> None:
    log.handlers.clear()
    log.setLevel(logging.INFO if is_main else logging.WARNING)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(fmt)
    log.addHandler(h)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(out / "train.log")
        fh.setFormatter(fmt)
        log.addHandler(fh)


def plan_runs(cfg: TrainConfig) -> list:
    runs = []
    folds = range(cfg.folds) if cfg.fold_ids is None else cfg.fold_ids
    for loss in cfg.losses:
        for sched in (cfg.schedules if loss in BOUNDARY_LOSSES else [None]):
            for f in folds:
                runs.append(RunSpec(loss, sched, f))
    return runs


def run_experiment(cfg: TrainConfig) -> ExperimentResult:
    cfg.check()
    t_start = time.time()
    ctx = distributed.setup(cfg.device)
    out = Path(cfg.out)
    threads = torch.get_num_threads()
    if cfg.threads:
        # the CPU kernels' results depend on how work is split over threads, so a fixed count makes a run repeat
        # on any machine; several torch processes on few cores also stall each other when each runs many threads
        torch.set_num_threads(cfg.threads)
    try:
        setup_logging(out, ctx.is_main)
        if ctx.is_main:
            (out / "config.json").write_text(json.dumps(cfg.as_dict(), indent=2))
        log.info("fastgsl.train: %s on %s, %d process(es); losses %s; schedules %s; folds %s; %d epochs x %d "
                 "iterations, batch %d, patch %s, AMP %s, DTM %s, %d torch thread(s) per process", cfg.data, ctx.device,
                 ctx.world,
                 ",".join(cfg.losses), ",".join(cfg.schedules), "all" if cfg.fold_ids is None else cfg.fold_ids,
                 cfg.epochs, cfg.iters_per_epoch, cfg.batch_size, "x".join(map(str, cfg.patch_size)), cfg.amp, cfg.dtm,
                 torch.get_num_threads())
        # rank 0 generates and preprocesses; the others then read its cache
        folder = spec = cases = None
        for turn in ("main", "others"):
            if (turn == "main") == ctx.is_main:
                folder = ds.resolve_data(cfg.data, cfg.task, cfg.data_dir, cfg.num_cases)
                spec, cases = ds.preprocess_dataset(folder, cfg.task, out / "preprocessed", cfg.binary)
            ctx.barrier()
        cases = [pad_case(c, cfg.patch_size) for c in cases]
        folds = ds.make_folds(len(cases), cfg.folds, cfg.seed)
        log.info("data: %s, %d cases, %s task (%s), spacing %s mm", folder, len(cases), spec.dataset,
                 ", ".join(spec.class_names), tuple(round(s, 3) for s in cases[0].spacing))

        rows, histories, previews = [], {}, {}
        seeds = cfg.training_seeds
        for seed in seeds:
            scfg = dataclasses.replace(cfg, seed=seed)
            for run in plan_runs(scfg):
                train_idx, test_idx = folds[run.fold]
                # one seed keeps the historical layout; several get a folder each
                run_dir = out / run.run_id / (f"seed{seed}" if len(seeds) > 1 else "") / f"fold{run.fold}"
                res = train_run(scfg, spec, [cases[i] for i in train_idx], [cases[i] for i in test_idx], run, ctx,
                                run_dir)
                label = LOSS_LABELS[run.loss] + ("" if res.alpha_label is None or len(cfg.schedules) == 1
                                                 else f" ({res.alpha_label})")
                histories[f"{label} f{run.fold}" + (f" s{seed}" if len(seeds) > 1 else "")] = res.history
                for r in res.rows:
                    rows.append({"loss": run.loss, "schedule": res.alpha_label, "seed": seed, "fold": run.fold, **r})
                if seed == seeds[0] and run.schedule in (None, cfg.schedules[0]):
                    previews.setdefault(run.loss, {}).update(res.previews)

        md, vs = "", []
        if ctx.is_main:
            report.write_csv(out / "results.csv", rows)
            data = f"built-in generated {cfg.task or 'liver'} task" if cfg.data == "builtin" else cfg.data
            notes = [f"Data: {data}; "
                     f"{len({(r['fold'], r['case']) for r in rows})} held-out cases over fold(s) "
                     f"{sorted({r['fold'] for r in rows})} of {cfg.folds}, training seed(s) "
                     f"{', '.join(map(str, seeds))} (split drawn with seed {cfg.seed}); "
                     f"{cfg.epochs} epochs x "
                     f"{cfg.iters_per_epoch} iterations, batch {cfg.batch_size}, patch "
                     f"{'x'.join(map(str, cfg.patch_size))}, Adam lr {cfg.lr}, "
                     f"schedule(s) {', '.join(cfg.schedules)} (warm-up {cfg.warmup}), DTM {cfg.dtm}, AMP {cfg.amp}, "
                     f"{ctx.world} process(es) on {ctx.device.type}."]
            md, vs = report.build_markdown(rows, spec, title="fastgsl reference training: results", notes=notes)
            elapsed = time.time() - t_start
            md += f"\nWall time: {elapsed / 60:.1f} min.\n"
            (out / "results.md").write_text(md)
            shown = figures.prediction_figure(out / "predictions.png", previews, rows, spec)
            figures.training_curves(out / "curves.png", histories)
            log.info("wrote %s, %s, %s (cases %s), %s", out / "results.csv", out / "results.md",
                     out / "predictions.png", ", ".join(shown), out / "curves.png")
        return ExperimentResult(rows, histories, md, vs, time.time() - t_start, tuple(cases[0].spacing))
    finally:
        torch.set_num_threads(threads)
        distributed.teardown(ctx)
