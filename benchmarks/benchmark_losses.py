"""Forward + backward of the paper's training loss, Dice-CE + GSL, against its peers in the same run.

Workload: ``CompositeLoss(DiceCELoss, GeneralizedSurfaceLoss)`` on fp32 logits 2x4x96^3 with a
given DTM, on the CPU path.  Peers: MIST 2.3.0 ``GenSurfLoss`` (the same loss as the authors ship it), MONAI
``DiceCELoss`` (the region term alone) and the naive PyTorch formula (``fastgsl.reference``).

    pytest benchmarks/benchmark_losses.py --benchmark-columns=min,median,rounds
    python -m benchmarks.benchmark_losses      # also prints peak memory above the inputs, as a table

The main also reports fastgsl's achieved bandwidth: the bytes its two passes must move (the model of
``benchmarks/benchmark_voxel_stats.py``: each input read once per pass, the gradient written once) over its
time, against the same run's memory-bandwidth floor, a ``torch`` copy of the same number of bytes (read + write),
the two timed in turns.

``FASTGSL_BENCH_SHAPE=2,4,64,64,64`` changes the workload (e.g. a smaller one on a slow machine); on a CUDA
machine ``FASTGSL_BENCH_DEVICE=cuda`` runs the same comparison on the GPU.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

SHAPE = tuple(int(s) for s in os.environ.get("FASTGSL_BENCH_SHAPE", "2,4,96,96,96").split(","))
DEVICE = os.environ.get("FASTGSL_BENCH_DEVICE", "cpu")
ALPHA = 0.5
PEERS = ("fastgsl", "mist", "monai_dicece", "naive")


def inputs(shape=SHAPE, device=DEVICE):
    g = torch.Generator().manual_seed(0)
    B, C, *sp = shape
    logits = torch.randn(shape, generator=g).to(device)
    labels = torch.randint(0, C, (B, *sp), generator=g).to(device)
    dtm = (torch.randn(shape, generator=g) * 10).to(device)  # a given DTM: its values don't change the cost
    return logits, labels, dtm


def make_step(peer: str, shape=SHAPE, device=DEVICE):
    """A zero-argument callable running forward + backward once, and the device, for ``peer``."""
    logits, labels, dtm = inputs(shape, device)
    logits.requires_grad_()
    if peer == "fastgsl":
        from fastgsl.losses import CompositeLoss, DiceCELoss, GeneralizedSurfaceLoss
        # MIST's settings: Dice-CE halves, squared Dice, background-free mean surface term
        loss = CompositeLoss(DiceCELoss(0.5, 0.5, smooth_nr=1e-6, smooth_dr=1e-6),
                             GeneralizedSurfaceLoss(class_reduction="mean", include_background=False), ALPHA)
        fn = lambda: loss(logits, labels, dtm)
    elif peer == "mist":
        from mist.loss_functions.losses.generalized_surface import GenSurfLoss
        loss, y = GenSurfLoss(), labels.unsqueeze(1)
        fn = lambda: loss(y, logits, dtm=dtm, alpha=ALPHA)
    elif peer == "monai_dicece":
        from monai.losses import DiceCELoss
        loss, y = DiceCELoss(softmax=True, to_onehot_y=True, squared_pred=True), labels.unsqueeze(1)
        fn = lambda: loss(logits, y)
    elif peer == "naive":
        from fastgsl import reference as ref
        fn = lambda: ALPHA * ref.dice_ce(logits, labels, 0.5, 0.5, smooth_nr=1e-6, smooth_dr=1e-6) + \
            (1 - ALPHA) * ref.generalized_surface(logits, labels, dtm, include_background=False,
                                                  class_reduction="mean")
    else:
        raise ValueError(peer)

    def step():
        logits.grad = None
        fn().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    return step, device


@pytest.mark.parametrize("peer", PEERS)
def test_dicece_gsl_forward_backward(benchmark, peer):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("FASTGSL_BENCH_DEVICE=cuda but no CUDA device is present")
    step, _ = make_step(peer)
    step()  # warm-up
    benchmark.group = f"Dice-CE + GSL fwd+bwd {'x'.join(map(str, SHAPE))} {DEVICE}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.pedantic(step, rounds=5, iterations=1)


def main():
    import time

    from benchmarks.peak_memory import measure

    rows = []
    for peer in PEERS:
        step, _ = make_step(peer)
        step()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        mem = measure("benchmarks.benchmark_losses", "make_step", peer)
        rows.append((peer, min(times), sorted(times)[len(times) // 2], mem))
    mist = dict((r[0], r) for r in rows)["mist"]
    ours = dict((r[0], r) for r in rows)["fastgsl"]
    print(f"Dice-CE + GSL forward+backward, logits {'x'.join(map(str, SHAPE))} fp32, {DEVICE}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| peer | min (ms) | median (ms) | time vs MIST | peak memory above inputs (MiB) | memory vs MIST |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for peer, tmin, tmed, mem in rows:
        print(f"| {peer} | {tmin * 1e3:.1f} | {tmed * 1e3:.1f} | {tmin / mist[1]:.2f}x | {mem / 2**20:.1f} | "
              f"{mem / mist[3]:.2f}x |")
    moved = bytes_moved()
    step, _ = make_step("fastgsl")
    copy = copy_step(moved)  # one 170 MB pair serves both comparisons
    ours_s, copy_s, ratios = alternate(step, copy)
    print(f"\nfastgsl moves {moved / 1e6:.0f} MB (both passes). Alternating fastgsl's step and a torch copy of the "
          f"same bytes (read + write), {len(ratios)} rounds each: best {ours_s * 1e3:.1f} ms "
          f"({moved / ours_s / 1e9:.2f} GB/s) against {copy_s * 1e3:.1f} ms ({moved / copy_s / 1e9:.2f} GB/s): "
          f"fastgsl runs at {copy_s / ours_s:.0%} of the copy bandwidth (best against best); the median of the "
          f"rounds' own ratios is {sorted(ratios)[len(ratios) // 2]:.0%}")
    team = after_torch_op(step, copy)
    if team:
        print("The step right after a torch copy (best of 11 each, in turns): "
              f"{team['team'] * 1e3:.1f} ms on torch's OpenMP team, {team['threads'] * 1e3:.1f} ms on std::threads")


def after_torch_op(step, torch_op, rounds: int = 11):
    """Best time of ``step`` right after ``torch_op``, with the host library on torch's OpenMP team and on its own
    std::threads, in turns; None where there is no team to share (see ``fastgsl._native``)."""
    import time

    from fastgsl import _native
    from fastgsl.ops.voxel_stats import host

    launcher, _ = _native.openmp_team()
    lib = host.native_library()
    if launcher is None or lib is None:
        return None
    best = {"team": float("inf"), "threads": float("inf")}
    try:
        for _ in range(rounds):
            for mode in best:
                lib.fastgsl_host_set_team(launcher if mode == "team" else None)
                torch_op()
                t0 = time.perf_counter()
                step()
                best[mode] = min(best[mode], time.perf_counter() - t0)
    finally:
        lib.fastgsl_host_set_team(launcher)
    return best


def alternate(step, copy, rounds: int = 15):
    """Best times of ``step`` and ``copy``, timed in turn ``rounds`` times, and each round's ``copy / step`` ratio:
    taking the two in turns keeps a slow spell of a shared machine from landing on one of them only."""
    import time

    step(), copy()
    ours, floor, ratios = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        step()
        t1 = time.perf_counter()
        copy()
        t2 = time.perf_counter()
        ours.append(t1 - t0), floor.append(t2 - t1), ratios.append((t2 - t1) / (t1 - t0))
    return min(ours), min(floor), ratios


def bytes_moved(shape=SHAPE) -> int:
    """Bytes the fused Dice-CE + GSL passes must move for ``shape``: fp32 logits and DTM, int64 labels."""
    from benchmarks.benchmark_voxel_stats import LOSS_NEEDS, bytes_per_voxel

    B, C, *sp = shape
    fwd, bwd = bytes_per_voxel(C, LOSS_NEEDS["DiceCE+GSL"])
    return (fwd + bwd) * B * math.prod(sp)


def copy_step(nbytes: int):
    """A callable that copies ``nbytes / 2`` bytes into another ``nbytes / 2`` (the bandwidth floor: read + write)."""
    src = torch.ones(nbytes // 8, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    return lambda: dst.copy_(src)


if __name__ == "__main__":
    main()
