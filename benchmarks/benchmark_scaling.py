"""How cost grows with the work: the EDT, Dice-CE + GSL forward + backward and HD95 from 48^3 to 256^3 voxels.

For each operation, fastgsl and its peer are timed at several cubic sizes in the same run (the slow peers at
fewer sizes), and each curve's slope is fitted on log-log axes (least squares of log time on log voxels).  A slope
of 1 is linear cost; below 1 at small sizes means fixed costs dominate, above 1 means the work per voxel grows
(e.g. a working set that no longer fits in cache).  A second slope is fitted from 96^3 up, past the fixed costs.

* EDT: ``fastgsl.dtm.labels_to_dtm`` of a 4-class label map ``(1, n, n, n)`` (4 maps, ``itk``) against SimpleITK
  ``SignedMaurerDistanceMap`` over the same 4 masks;
* loss: ``CompositeLoss(DiceCELoss, GeneralizedSurfaceLoss)`` on fp32 logits ``(1, 4, n, n, n)`` with a given DTM,
  against MIST 2.3.0 ``GenSurfLoss``;
* HD95: ``fastgsl.metrics.hausdorff_distance(percentile=95)`` on a pair of blob masks ``(1, 1, n, n, n)`` against
  MONAI ``compute_hausdorff_distance``.

    python -m benchmarks.benchmark_scaling          # writes benchmarks/results/scaling_cpu.{png,json,md}

``FASTGSL_BENCH_SIZES=48,64,96`` overrides the sizes (the peers take the sizes up to ``FASTGSL_BENCH_PEER_MAX``,
default 160).  Median of ``FASTGSL_BENCH_ROUNDS`` (default 3) rounds after a warm-up, and of more (up to 25, until
half a second has run) for the fast calls.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

SIZES = tuple(int(s) for s in os.environ.get("FASTGSL_BENCH_SIZES", "48,64,96,128,160,192,256").split(","))
PEER_MAX = int(os.environ.get("FASTGSL_BENCH_PEER_MAX", "160"))
ROUNDS = int(os.environ.get("FASTGSL_BENCH_ROUNDS", "3"))
MIN_SECONDS, MAX_ROUNDS = 0.5, 25
#: the second slope is fitted from this size up, past the fixed costs of a call
LARGE_FROM = 96
RESULTS = Path(__file__).resolve().parent / "results"


def _labels(n: int, classes: int = 4, seed: int = 0) -> torch.Tensor:
    """A label map of nested blobs (so that every class has a surface), (1, n, n, n) int64."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32),) * 3, indexing="ij")
    rng = np.random.default_rng(seed)
    r = np.sqrt(z * z + y * y * 1.3 + x * x * 0.8) * (1 + 0.1 * np.sin(5 * np.arctan2(y, x) + rng.uniform(0, 6)))
    lab = sum((r < t).astype(np.int64) for t in np.linspace(0.8, 0.3, classes - 1))  # 0 outside, classes-1 inside
    return torch.from_numpy(lab)[None]


def _median_seconds(fn) -> float:
    """Median of at least ``ROUNDS`` rounds, and of more for fast calls (until ``MIN_SECONDS`` have run, at most
    ``MAX_ROUNDS``): three rounds of a few milliseconds are at the mercy of one scheduler hiccup."""
    fn()
    times = []
    while len(times) < ROUNDS or (sum(times) < MIN_SECONDS and len(times) < MAX_ROUNDS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def edt_fastgsl(n):
    from fastgsl.dtm import labels_to_dtm

    lab = _labels(n)
    return lambda: labels_to_dtm(lab, 4, convention="itk")


def edt_simpleitk(n):
    import SimpleITK as sitk

    lab = _labels(n)[0].numpy()
    images = [sitk.GetImageFromArray((lab == c).astype(np.uint8)) for c in range(4)]
    return lambda: [sitk.SignedMaurerDistanceMap(im, insideIsPositive=False, squaredDistance=False,
                                                 useImageSpacing=True) for im in images]


def _loss_inputs(n):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((1, 4, n, n, n), generator=g).requires_grad_()
    labels = _labels(n)
    dtm = torch.randn((1, 4, n, n, n), generator=g) * 10
    return logits, labels, dtm


def loss_fastgsl(n):
    from fastgsl.losses import CompositeLoss, DiceCELoss, GeneralizedSurfaceLoss

    logits, labels, dtm = _loss_inputs(n)
    loss = CompositeLoss(DiceCELoss(0.5, 0.5, smooth_nr=1e-6, smooth_dr=1e-6),
                         GeneralizedSurfaceLoss(class_reduction="mean", include_background=False), 0.5)

    def step():
        logits.grad = None
        loss(logits, labels, dtm).backward()
    return step


def loss_mist(n):
    from mist.loss_functions.losses.generalized_surface import GenSurfLoss

    logits, labels, dtm = _loss_inputs(n)
    loss, y = GenSurfLoss(), labels.unsqueeze(1)

    def step():
        logits.grad = None
        loss(y, logits, dtm=dtm, alpha=0.5).backward()
    return step


def _masks(n):
    lab = _labels(n, classes=2)
    target = (lab == 1)[:, None]
    pred = torch.roll(target, 2, dims=2)
    return pred, target


def hd95_fastgsl(n):
    from fastgsl.metrics import hausdorff_distance

    pred, target = _masks(n)
    return lambda: hausdorff_distance(pred, target, percentile=95, include_background=True)


def hd95_monai(n):
    from monai.metrics import compute_hausdorff_distance

    pred, target = _masks(n)
    return lambda: compute_hausdorff_distance(pred, target, percentile=95, include_background=True)


OPERATIONS = {  # operation: ((implementation, factory, is the peer), ...)
    "EDT (4 maps)": (("fastgsl", edt_fastgsl, False), ("SimpleITK", edt_simpleitk, True)),
    "Dice-CE + GSL fwd+bwd (C=4)": (("fastgsl", loss_fastgsl, False), ("MIST", loss_mist, True)),
    "HD95 (one pair)": (("fastgsl", hd95_fastgsl, False), ("MONAI", hd95_monai, True)),
}


def slope(voxels, seconds) -> float:
    """Least-squares slope of log(seconds) against log(voxels)."""
    x, y = np.log(np.asarray(voxels, float)), np.log(np.asarray(seconds, float))
    return float(np.polyfit(x, y, 1)[0])


def measure(sizes=SIZES, peer_max=PEER_MAX):
    """``{operation: {implementation: {"sizes": [...], "seconds": [...], "slope": s} or {"absent": reason}}}``."""
    out = {}
    for op, impls in OPERATIONS.items():
        out[op] = {}
        for name, factory, is_peer in impls:
            run = [n for n in sizes if not is_peer or n <= peer_max]
            try:
                secs = [_median_seconds(factory(n)) for n in run]
            except ImportError as e:
                out[op][name] = {"absent": f"{type(e).__name__}: {e}"}
                continue
            large = [(n ** 3, t) for n, t in zip(run, secs) if n >= LARGE_FROM]
            out[op][name] = {"sizes": run, "seconds": secs, "ns_per_voxel": [s / n ** 3 * 1e9 for s, n in
                                                                               zip(secs, run)],
                             "slope": slope([n ** 3 for n in run], secs) if len(run) > 1 else math.nan,
                             "slope_large": slope(*zip(*large)) if len(large) > 1 else math.nan}
    return out


def cpu_name() -> str:
    """The CPU's model name where Linux reports it (``platform.processor()`` often says only ``x86_64``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def plot(results, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.2))
    for ax, (op, impls) in zip(np.atleast_1d(axes), results.items()):
        for name, r in impls.items():
            if "absent" in r:
                continue
            vox = [n ** 3 for n in r["sizes"]]
            ax.loglog(vox, r["seconds"], "o-", label=f"{name} (slope {r['slope']:.2f})")
        ax.set_title(op)
        ax.set_xlabel("voxels")
        ax.set_ylabel("seconds (median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"CPU cost against size: {machine()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results) -> str:
    lines = [f"Cost against size on the CPU ({machine()}); median of {ROUNDS} to {MAX_ROUNDS} rounds (more for fast "
             f"calls, until {MIN_SECONDS} s have run).", "",
             "| operation | implementation | sizes | seconds | ns / voxel | log-log slope | slope from "
             f"{LARGE_FROM}^3 |",
             "| --- | --- | --- | --- | --- | ---: | ---: |"]
    for op, impls in results.items():
        for name, r in impls.items():
            if "absent" in r:
                lines.append(f"| {op} | {name} | absent: {r['absent']} | | | | |")
                continue
            lines.append(f"| {op} | {name} | {', '.join(f'{n}^3' for n in r['sizes'])} | "
                         f"{', '.join(f'{s:.3g}' for s in r['seconds'])} | "
                         f"{', '.join(f'{v:.1f}' for v in r['ns_per_voxel'])} | {r['slope']:.2f} | "
                         f"{r['slope_large']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    RESULTS.mkdir(exist_ok=True)
    results = measure()
    (RESULTS / "scaling_cpu.json").write_text(json.dumps({"machine": machine(), "rounds": ROUNDS,
                                                          "results": results}, indent=1))
    (RESULTS / "scaling_cpu.md").write_text(markdown(results))
    plot(results, RESULTS / "scaling_cpu.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
