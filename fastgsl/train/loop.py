"""Training one (loss, schedule, fold) run: DDP, AMP, the alpha schedule, validation and checkpoints.

Gradients are averaged over ranks by ``DistributedDataParallel``; since every loss is a mean over batch items
and the patches depend only on the global batch position (``fastgsl.train.sampling``), two ranks with batch 1
take the same steps as one process with batch 2.  AMP runs the network under ``torch.autocast`` (bf16 or fp16)
and hands its low-precision logits to the loss, whose fused kernels upcast to fp32 internally; fp16 uses a
``GradScaler``.  With ``--deep-supervision`` the loss is nnU-Net's weighted sum over the network's heads.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from fastgsl.train import checkpoint, evaluate
from fastgsl.train.config import TrainConfig
from fastgsl.train.model import build_model, deep_supervision_weights, plan_network
from fastgsl.train.objectives import BOUNDARY_LOSSES, build_loss, parse_schedule, voxel_counts
from fastgsl.train.sampling import PatchDataset, whole_volume_dtm

log = logging.getLogger("fastgsl.train")


@dataclass
class RunSpec:
    """One row of the experiment: a loss, its schedule (boundary losses only) and a fold."""

    loss: str
    schedule: str | None
    fold: int

    @property
    def run_id(self) -> str:
        s = "" if self.schedule is None else "-" + self.schedule.replace(":", "")
        return f"{self.loss}{s}"


@dataclass
class RunResult:
    rows: list
    history: list
    previews: dict = field(default_factory=dict)
    alpha_label: str | None = None


def common_spacing(cases: list) -> tuple:
    """The spacing shared by the cases (after the paper's resampling they all have one); the mean otherwise."""
    sp = np.array([c.spacing for c in cases], dtype=np.float64)
    if not np.allclose(sp, sp[0], rtol=1e-3):
        log.warning("cases have different spacings; the network is planned on their mean, and the on-the-fly DTM "
                    "uses it too (use --dtm precomputed for per-case spacing)")
    return tuple(float(s) for s in sp.mean(0))


def train_step(model, loss_fn, batch: dict, optimizer, scaler, device: torch.device, amp: str) -> torch.Tensor:
    """One optimisation step; returns the (detached, fp32) loss of this rank's batch."""
    x = batch["image"].to(device, non_blocking=True)
    y = batch["target"].to(device, non_blocking=True)
    d = batch["dtm"].to(device, non_blocking=True) if "dtm" in batch else None
    optimizer.zero_grad(set_to_none=True)
    with evaluate.autocast(device, amp):
        out = model(x)
    heads = out.unbind(1) if out.ndim == x.ndim + 1 else (out,)
    weights = deep_supervision_weights(len(heads))
    loss = sum(w * loss_fn(h, y, d) for w, h in zip(weights, heads))
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach().float()


def _mean_over_ranks(value: float, ctx) -> float:
    if not ctx.active:
        return value
    dev = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / ctx.world


def train_run(cfg: TrainConfig, spec, train_cases: list, test_cases: list, run: RunSpec, ctx,
              run_dir: Path) -> RunResult:
    """Train ``run`` on ``train_cases``, evaluate on ``test_cases``; resumable from ``run_dir``."""
    meta = {"loss": run.loss, "schedule": run.schedule, "fold": run.fold, "seed": cfg.seed, "epochs": cfg.epochs,
            "iters": cfg.iters_per_epoch, "patch": list(cfg.patch_size), "batch": cfg.batch_size, "lr": cfg.lr,
            "dtm": cfg.dtm, "ds": cfg.deep_supervision, "amp": cfg.amp, "filters": [cfg.filters, cfg.max_filters],
            "warmup": cfg.warmup, "train": [c.name for c in train_cases]}
    if cfg.resume:
        done = checkpoint.load_result(run_dir, meta)
        if done is not None:
            log.info("[%s fold %d] already finished in %s; reusing its results", run.run_id, run.fold, run_dir)
            prev = run_dir / "previews.npz"
            views = {}
            if prev.exists():
                z = np.load(prev)
                views = {k[:-6]: (z[k[:-6] + ":image"], z[k[:-6] + ":truth"], z[k[:-6] + ":pred"])
                         for k in z.files if k.endswith(":image")}
            return RunResult(done["rows"], done["history"], views, done.get("alpha_label"))

    torch.manual_seed(cfg.seed)
    spacing = common_spacing(train_cases)
    plan = plan_network(cfg.patch_size, spacing, filters=cfg.filters, max_filters=cfg.max_filters)
    model = build_model(plan, spec.in_channels, spec.out_channels, cfg.deep_supervision).to(ctx.device)
    log.info("[%s fold %d] network: %s (%.2fM parameters)", run.run_id, run.fold, plan.describe(),
             sum(p.numel() for p in model.parameters()) / 1e6)

    schedule, alpha_label = None, None
    if run.loss in BOUNDARY_LOSSES:
        alpha_label, schedule = parse_schedule(run.schedule, cfg.epochs, cfg.warmup)
    weights = None
    if run.loss == "gsl":
        from fastgsl.weights import class_weights
        counts = voxel_counts(train_cases, spec, ctx.rank, ctx.world)
        weights = class_weights(counts.clamp_min(1))
        log.info("[%s fold %d] class voxel counts %s -> eq. 13 weights %s", run.run_id, run.fold, counts.tolist(),
                 [round(w, 6) for w in weights.tolist()])
    loss_fn = build_loss(run.loss, spec, schedule, spacing=spacing, class_weights=weights).to(ctx.device)
    dtms = [whole_volume_dtm(c, spec) for c in train_cases] if cfg.dtm == "precomputed" else None

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.amp == "fp16")
    start, history = 0, []
    if cfg.resume:
        start, history = checkpoint.load(run_dir, model=model, optimizer=optimizer, scaler=scaler, meta=meta,
                                         map_location=ctx.device)
        if start:
            log.info("[%s fold %d] resuming at epoch %d from %s", run.run_id, run.fold, start, run_dir / "last.pt")
    net = model
    if ctx.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    for epoch in range(start, cfg.epochs):
        alpha = loss_fn.set_epoch(epoch) if hasattr(loss_fn, "set_epoch") else 1.0
        data = PatchDataset(train_cases, spec, cfg.patch_size, seed=cfg.seed, epoch=epoch,
                            steps=cfg.iters_per_epoch, global_batch=cfg.batch_size, rank=ctx.rank, world=ctx.world,
                            dtms=dtms)
        loader = torch.utils.data.DataLoader(data, batch_size=data.local, shuffle=False, num_workers=cfg.workers,
                                             pin_memory=ctx.device.type == "cuda")
        net.train()
        t0, total = time.time(), 0.0
        bar = _progress(loader, cfg.progress and ctx.is_main, f"{run.run_id} f{run.fold} ep {epoch + 1}/{cfg.epochs}")
        for batch in bar:
            value = train_step(net, loss_fn, batch, optimizer, scaler, ctx.device, cfg.amp)
            total += float(value)
            if not math.isfinite(float(value)):
                raise FloatingPointError(f"[{run.run_id} fold {run.fold}] loss became {float(value)} at epoch "
                                         f"{epoch}; try --amp off or a lower --lr")
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{float(value):.4f}", alpha=f"{alpha:.3f}")
        entry = {"epoch": epoch, "loss": _mean_over_ranks(total / cfg.iters_per_epoch, ctx), "alpha": alpha,
                 "seconds": time.time() - t0}
        last = epoch == cfg.epochs - 1
        if not last and (epoch + 1) % cfg.val_every == 0:
            rows, _ = evaluate.evaluate(model, test_cases, spec, cfg.patch_size, ctx, cfg.amp,
                                        sw_batch_size=cfg.sw_batch_size)
            entry["val"] = evaluate.summarize(rows)
        history.append(entry)
        val = entry.get("val")
        log.info("[%s fold %d] epoch %3d/%d  loss %.4f  alpha %.3f  %.1fs%s", run.run_id, run.fold, epoch + 1,
                 cfg.epochs, entry["loss"], alpha, entry["seconds"],
                 "" if not val else f"  val Dice {val['dice']:.4f} HD95 {val['hd95']:.2f} ASD {val['asd']:.2f}")
        if ctx.is_main:
            checkpoint.save(run_dir, model=model, optimizer=optimizer, scaler=scaler, next_epoch=epoch + 1,
                            history=history, meta=meta)
        ctx.barrier()

    rows, views = evaluate.evaluate(model, test_cases, spec, cfg.patch_size, ctx, cfg.amp, previews=True,
                                    sw_batch_size=cfg.sw_batch_size)
    s = evaluate.summarize(rows)
    if history:
        history[-1]["val"] = s
    log.info("[%s fold %d] test: Dice %.4f  HD95 %.2f mm  ASD %.2f mm over %d cases", run.run_id, run.fold,
             s["dice"], s["hd95"], s["asd"], len(test_cases))
    if ctx.is_main:
        checkpoint.save_result(run_dir, {"meta": meta, "rows": rows, "history": history, "alpha_label": alpha_label})
        np.savez_compressed(run_dir / "previews.npz", **{f"{k}:{n}": a for k, (im, tr, pr) in views.items()
                                                          for n, a in (("image", im), ("truth", tr), ("pred", pr))})
    ctx.barrier()
    return RunResult(rows, history, views, alpha_label)


def _progress(iterable, enabled: bool, desc: str):
    if not enabled or not sys.stderr.isatty():  # a bar redrawn into a log file is noise; the epoch lines remain
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is in the train extra; without it, the epoch log lines still report progress
        return iterable
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
