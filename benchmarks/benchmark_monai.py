"""fastgsl.monai drop-ins against their MONAI originals, same arguments, in the same run.

Workloads (``FASTGSL_BENCH_DEVICE``, default cpu):

* ``dicece`` / ``dice``: ``DiceCELoss`` / ``DiceLoss(softmax=True, to_onehot_y=True)`` forward + backward on fp32
  logits 2x4x96^3 (``FASTGSL_BENCH_SHAPE``) and a ``(B, 1, ...)`` label map: time and peak memory above the inputs
  (``benchmarks/peak_memory.py``, each in a fresh process);
* ``hausdorff``: ``HausdorffDTLoss(softmax=True, to_onehot_y=True)`` forward + backward, same shape; the labels are
  ellipsoids and the logits a noisy, shifted copy, so that both distance fields are realistic;
* ``hd95``: ``HausdorffDistanceMetric(percentile=95)`` over a validation set of ``FASTGSL_BENCH_VOLUMES`` (default
  4) one-hot volumes 1x4x128x128x96 with spacing (0.8, 0.8, 1.5), one ``__call__`` per volume, then
  ``aggregate()``.

    pytest benchmarks/benchmark_monai.py --benchmark-columns=min,median,rounds
    python -m benchmarks.benchmark_monai       # a markdown table with the ratios; checks the results agree

``FASTGSL_BENCH_THREADS`` sets ``torch.set_num_threads`` for both peers (and the memory subprocesses): on a
machine whose cores other jobs share, one thread gives stable figures where a contended thread pool does not.
"""
from __future__ import annotations

import functools
import os
import time
import warnings

import numpy as np
import pytest
import torch

SHAPE = tuple(int(s) for s in os.environ.get("FASTGSL_BENCH_SHAPE", "2,4,96,96,96").split(","))
DEVICE = os.environ.get("FASTGSL_BENCH_DEVICE", "cpu")
VOLUMES = int(os.environ.get("FASTGSL_BENCH_VOLUMES", "4"))
VOLUME = (1, 4, 128, 128, 96)
SPACING = (0.8, 0.8, 1.5)
WORKLOADS = ("dicece", "dice", "hausdorff", "hd95")
PEERS = ("fastgsl", "monai")
ROUNDS = {"dicece": 5, "dice": 5, "hausdorff": 3, "hd95": 3}
LOSS_ARGS = dict(softmax=True, to_onehot_y=True)
if os.environ.get("FASTGSL_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["FASTGSL_BENCH_THREADS"]))


def _ellipsoid_labels(shape, classes, seed):
    """Integer labels ``shape``: ``classes - 1`` random ellipsoids over background 0 (later ones on top).

    Built one slice at a time: the memory benchmark's high-water mark must not see a construction peak."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=np.int64)
    rest = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape[1:]), indexing="ij")
    for c in range(1, classes):
        centre = rng.uniform(0.3, 0.7, len(shape)) * np.array(shape)
        radii = rng.uniform(0.12, 0.3, len(shape)) * np.array(shape)
        rest_r2 = sum(((g - m) / r) ** 2 for g, m, r in zip(rest, centre[1:], radii[1:]))
        for z in range(shape[0]):
            out[z][rest_r2 + ((z - centre[0]) / radii[0]) ** 2 <= 1.0] = c
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=None)
def _loss_inputs(shape=SHAPE):
    """Logits: noise plus 3 on the channel of a shifted copy of the labels (so P > 0.5 has real objects)."""
    B, C, *sp = shape
    labels = torch.stack([_ellipsoid_labels(tuple(sp), C, seed=b) for b in range(B)]).unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    shifted = torch.roll(labels, shifts=(3, -2, 4)[:len(sp)], dims=tuple(range(2, len(sp) + 2)))
    logits = torch.randn(shape, generator=g)
    logits.scatter_add_(1, shifted, torch.full(shifted.shape, 3.0))
    return logits, labels


@functools.lru_cache(maxsize=None)
def _validation_set():
    C = VOLUME[1]
    sets = []
    for v in range(VOLUMES):
        t = _ellipsoid_labels(VOLUME[2:], C, seed=100 + v)
        p = torch.roll(t, shifts=(2, -3, 1), dims=(0, 1, 2))
        p[:4, :4, :4] = 1  # a far false positive: HD95 and HD differ
        onehot = lambda lab: torch.nn.functional.one_hot(lab, C).movedim(-1, 0).unsqueeze(0).float()  # noqa: E731
        sets.append((onehot(p), onehot(t)))
    return sets


def make_step(peer: str, workload: str, device: str = DEVICE):
    """A zero-argument callable running the workload once for ``peer`` (returns its result), and the device."""
    if peer not in PEERS or workload not in WORKLOADS:
        raise ValueError(f"unknown peer / workload {peer!r} / {workload!r}")
    if workload == "hd95":
        mod = __import__("fastgsl.monai.metrics" if peer == "fastgsl" else "monai.metrics", fromlist=["x"])
        vols = [(p.to(device), t.to(device)) for p, t in _validation_set()]

        def step():
            metric = mod.HausdorffDistanceMetric(percentile=95)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for p, t in vols:
                    metric(p, t, spacing=SPACING)
            out = metric.aggregate()
            if device == "cuda":
                torch.cuda.synchronize()
            return out
        return step, device
    mod = __import__("fastgsl.monai.losses" if peer == "fastgsl" else "monai.losses", fromlist=["x"])
    cls = {"dicece": "DiceCELoss", "dice": "DiceLoss", "hausdorff": "HausdorffDTLoss"}[workload]
    loss = getattr(mod, cls)(**LOSS_ARGS)
    logits, labels = (x.to(device) for x in _loss_inputs())
    logits.requires_grad_()

    def step():
        logits.grad = None
        value = loss(logits, labels)
        value.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return value.detach(), logits.grad

    return step, device


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_monai_dropin(benchmark, workload, peer):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("FASTGSL_BENCH_DEVICE=cuda but no CUDA device is present")
    step, _ = make_step(peer, workload)
    step()  # warm-up
    benchmark.group = f"fastgsl.monai vs MONAI: {workload} {DEVICE}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.pedantic(step, rounds=ROUNDS[workload], iterations=1)


def _agreement(a, b) -> float:
    """Largest relative difference between the two peers' results (loss value and gradient, or metric)."""
    pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
    worst = 0.0
    for x, y in pairs:
        scale = y.abs().max().clamp_min(1e-30)
        worst = max(worst, ((x - y).abs().max() / scale).item())
    return worst


def main():
    from benchmarks.peak_memory import measure

    labels = {"dicece": f"DiceCELoss fwd+bwd {'x'.join(map(str, SHAPE))}",
              "dice": f"DiceLoss fwd+bwd {'x'.join(map(str, SHAPE))}",
              "hausdorff": f"HausdorffDTLoss fwd+bwd {'x'.join(map(str, SHAPE))}",
              "hd95": f"HausdorffDistanceMetric(percentile=95), {VOLUMES} volumes {'x'.join(map(str, VOLUME))}"}
    print(f"fastgsl.monai vs MONAI, {DEVICE}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| workload | MONAI min (ms) | fastgsl min (ms) | speed-up | MONAI peak memory (MiB) | "
          "fastgsl peak memory (MiB) | memory vs MONAI | largest rel. difference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for workload in WORKLOADS:
        best, results, mem = {}, {}, {}
        for peer in PEERS:
            step, _ = make_step(peer, workload)
            results[peer] = step()
            times = []
            for _ in range(ROUNDS[workload]):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            best[peer] = min(times)
            if workload != "hd95":
                mem[peer] = measure("benchmarks.benchmark_monai", "make_step", peer, workload) / 2 ** 20
        diff = _agreement(results["fastgsl"], results["monai"])
        if workload == "hd95":
            mem_cols = "| n/a | n/a | n/a"
        else:
            mem_cols = f"| {mem['monai']:.1f} | {mem['fastgsl']:.1f} | {mem['fastgsl'] / mem['monai']:.2f}x"
        print(f"| {labels[workload]} | {best['monai'] * 1e3:.1f} | {best['fastgsl'] * 1e3:.1f} | "
              f"{best['monai'] / best['fastgsl']:.1f}x {mem_cols} | {diff:.1e} |")


if __name__ == "__main__":
    main()
