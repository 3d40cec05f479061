"""HD95 and ASD: fastgsl.metrics against MONAI and a SimpleITK loop, in the same run.

Workloads:

* ``batch``: one-hot masks 2x3x128^3 (background dropped, so 2 items x 2 classes = 4 pairs);
* ``pair``: one 512x512x128 pair;
* ``folded``: 2x3x128^3 one-hot masks of a folded, brain-tissue-like label map (two foreground classes, like grey
  and white matter), predicted as the same map shifted by 2 voxels.

The blob masks (``batch``, ``pair``) are ellipsoids with a wavy surface; the prediction is shifted, rescaled and
carries a small false positive far away, so that HD, HD95 and ASD all differ.  The folded map thresholds a smoothed
random field (sigma 6 voxels) at two levels, so that its surfaces fold everywhere: a third of its foreground voxels
are edge voxels (the blobs: a few percent), where the k-d tree gains little over the dense EDT.  Peers:

* ``fastgsl``: ``convention="monai"`` (the numbers MONAI gives), on ``FASTGSL_BENCH_DEVICE`` (default cpu), with the
  default distance path (``auto``: the k-d tree on the CPU, the dense EDT on a GPU);
* ``fastgsl_dense`` / ``fastgsl_sparse``: the same with ``FASTGSL_METRIC_DISTANCES=dense`` (the batched EDT) /
  ``sparse`` (the k-d tree, CPU only), so the table shows whether ``auto`` chose the faster;
* ``fastgsl_paper``: ``convention="paper"`` (the numbers the SimpleITK loop gives);
* ``monai``: ``compute_hausdorff_distance(percentile=95)`` / ``compute_average_surface_distance(symmetric=True)``
  (CPU: scipy erosion + KD-tree per pair; on a GPU with cuCIM installed, cuCIM's erosion and EDT);
* ``sitk``: the paper's evaluation, a Python loop over pairs of ``SignedMaurerDistanceMap``, ``LabelContour`` and
  ``np.percentile``.

    pytest benchmarks/benchmark_metrics.py --benchmark-columns=min,median,rounds
    python -m benchmarks.benchmark_metrics          # a markdown table with the ratios

``FASTGSL_BENCH_ROUNDS`` (default 3) sets the rounds, ``FASTGSL_BENCH_WORKLOADS=folded,batch`` the workloads of the
main; ``FASTGSL_BENCH_DEVICE=cuda`` runs fastgsl and MONAI on the
GPU (skipped, with the reason, where there is none).  The distance path that answered each fastgsl peer (as
``fastgsl.observe`` records it) is printed with the table and stored in pytest-benchmark's ``extra_info``.
"""
from __future__ import annotations

import functools
import os
import time
import warnings
from unittest import mock

import numpy as np
import pytest
import torch

from fastgsl import observe

ROUNDS = int(os.environ.get("FASTGSL_BENCH_ROUNDS", "3"))
DEVICE = os.environ.get("FASTGSL_BENCH_DEVICE", "cpu")
WORKLOADS = {"batch": (2, 3, (128, 128, 128)), "pair": (1, 1, (512, 512, 128)), "folded": (2, 3, (128, 128, 128))}
METRICS = ("hd", "hd95", "asd", "nsd")
PEERS = ("fastgsl", "fastgsl_dense", "fastgsl_sparse", "fastgsl_paper", "monai", "sitk")
#: surface Dice tolerance (mm)
NSD_TOLERANCE = 1.5
SPACING = (0.8, 0.8, 1.5)


def _ellipsoid(shape, centre, radii, wave=0.0, phase=0.0):
    z, y, x = (np.arange(n, dtype=np.float32) for n in shape)
    dz = (z[:, None, None] - centre[0]) / radii[0]
    dy = (y[None, :, None] - centre[1]) / radii[1]
    dx = (x[None, None, :] - centre[2]) / radii[2]
    r2 = dz * dz + dy * dy + dx * dx
    if wave:
        r2 = r2 * (1.0 + wave * np.sin(4.0 * np.arctan2(dy, dx) + phase) * np.cos(3.0 * dz))
    return r2 <= 1.0


def _folded_labels(shape, seed: int, sigma: float = 6.0) -> np.ndarray:
    """A label map in {0, 1, 2} whose class surfaces fold everywhere: a smoothed random field cut at two levels."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), sigma)
    lo, hi = np.quantile(field, [0.45, 0.7])
    return (field > lo).astype(np.uint8) + (field > hi).astype(np.uint8)


def edge_fraction(m: torch.Tensor) -> float:
    """Share of the foreground voxels that are edge voxels (MONAI's: the mask minus its cross-shaped erosion)."""
    from scipy import ndimage

    a = m.numpy()
    edges = sum(int((x & ~ndimage.binary_erosion(x)).sum()) for x in a.reshape((-1,) + a.shape[-3:]))
    return edges / max(int(a.sum()), 1)


@functools.lru_cache(maxsize=None)
def masks(workload: str):
    """(pred, target) bool tensors ``(B, C, *spatial)``, and include_background."""
    B, C, shape = WORKLOADS[workload]
    if workload == "folded":
        target = np.stack([_folded_labels(shape, seed) for seed in range(B)])
        pred = np.roll(target, 2, axis=1)
        classes = np.arange(C).reshape(1, C, 1, 1, 1)
        return (torch.from_numpy(pred[:, None] == classes), torch.from_numpy(target[:, None] == classes), False)
    rng = np.random.default_rng(0)
    pred = np.zeros((B, C) + shape, bool)
    target = np.zeros_like(pred)
    first = 1 if C > 1 else 0
    for b in range(B):
        for c in range(first, C):
            centre = np.array(shape) * rng.uniform(0.35, 0.65, 3)
            radii = np.array(shape) * rng.uniform(0.15, 0.3, 3)
            target[b, c] = _ellipsoid(shape, centre, radii, wave=0.15, phase=rng.uniform(0, 6))
            pred[b, c] = _ellipsoid(shape, centre + rng.uniform(-3, 3, 3), radii * rng.uniform(0.9, 1.1, 3),
                                    wave=0.1, phase=rng.uniform(0, 6))
            fp = np.array(shape) * rng.uniform(0.05, 0.15, 3)  # a small false positive near a corner
            pred[b, c] |= _ellipsoid(shape, fp, (3.0, 3.0, 3.0))
        if first:
            pred[b, 0] = ~pred[b, 1:].any(0)
            target[b, 0] = ~target[b, 1:].any(0)
    return torch.from_numpy(pred), torch.from_numpy(target), first == 0


def _sitk_loop(pred, target, include_background, metric):
    import SimpleITK as sitk

    first = 0 if include_background else 1
    out = np.empty((pred.shape[0], pred.shape[1] - first))
    for b in range(pred.shape[0]):
        for c in range(first, pred.shape[1]):
            p, t = pred[b, c].numpy(), target[b, c].numpy()
            imgs = []
            for m in (p, t):
                im = sitk.GetImageFromArray(m.astype(np.uint8))
                im.SetSpacing(SPACING[::-1])
                imgs.append(im)
            dp, dt = (sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
                im, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)) for im in imgs)
            if metric in ("hd", "hd95"):
                q = 95 if metric == "hd95" else 100
                out[b, c - first] = max(np.percentile(np.maximum(dt[p], 0), q),
                                        np.percentile(np.maximum(dp[t], 0), q))
            else:
                cp, ct = (sitk.GetArrayFromImage(sitk.LabelContour(im)) != 0 for im in imgs)
                out[b, c - first] = 0.5 * (np.abs(dt[cp]).mean() + np.abs(dp[ct]).mean())
    return out


def make_call(peer: str, workload: str, metric: str, device: str = DEVICE):
    """A zero-argument callable computing ``metric`` on ``workload`` with ``peer``."""
    pred, target, bg = masks(workload)
    if peer != "sitk" and device != "cpu":
        pred, target = pred.to(device), target.to(device)
    if peer.startswith("fastgsl"):
        from fastgsl import metrics

        conv = "paper" if peer == "fastgsl_paper" else "monai"
        kw = dict(spacing=SPACING, include_background=bg, convention=conv)
        if metric in ("hd", "hd95"):
            pct = 95 if metric == "hd95" else None
            metric_fn = lambda: metrics.hausdorff_distance(pred, target, percentile=pct, **kw)
        elif metric == "asd":
            metric_fn = lambda: metrics.average_surface_distance(pred, target, **kw)
        else:
            metric_fn = lambda: metrics.surface_dice(pred, target, NSD_TOLERANCE, **kw)
        forced = {"fastgsl_dense": "dense", "fastgsl_sparse": "sparse"}
        fn = metric_fn  # the default path: no environment patch (copying os.environ costs about 0.3 ms a call)
        if peer in forced:
            def fn():
                with mock.patch.dict(os.environ, {"FASTGSL_METRIC_DISTANCES": forced[peer]}):
                    return metric_fn()
    elif peer == "monai":
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

        from monai.metrics import compute_surface_dice

        if metric in ("hd", "hd95"):
            pct = 95 if metric == "hd95" else None
            fn = lambda: compute_hausdorff_distance(pred, target, percentile=pct, spacing=SPACING,
                                                    include_background=bg)
        elif metric == "asd":
            fn = lambda: compute_average_surface_distance(pred, target, symmetric=True, spacing=SPACING,
                                                          include_background=bg)
        else:
            C = pred.shape[1] - (0 if bg else 1)
            fn = lambda: compute_surface_dice(pred, target, [NSD_TOLERANCE] * C, spacing=SPACING,
                                              include_background=bg)
    elif peer == "sitk":
        fn = lambda: _sitk_loop(pred, target, bg, metric)
    else:
        raise ValueError(peer)

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return call


def _skip_reason(peer: str, metric: str = "hd95"):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        return "FASTGSL_BENCH_DEVICE=cuda but no CUDA device is present"
    if peer in ("sitk", "fastgsl_sparse") and DEVICE == "cuda":
        return f"{peer} runs on the CPU only"
    if peer == "sitk" and metric == "nsd":
        return "the paper's SimpleITK evaluation has no surface Dice"
    return None


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("workload", tuple(WORKLOADS))
def test_surface_metric(benchmark, workload, metric, peer):
    reason = _skip_reason(peer, metric)
    if reason:
        pytest.skip(reason)
    call = make_call(peer, workload, metric)
    with observe.engines() as seen:
        call()  # warm-up (and the host EDT library's one-off build)
    B, C, shape = WORKLOADS[workload]
    benchmark.group = f"{metric} {B}x{C}x{'x'.join(map(str, shape))} {DEVICE}"
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.extra_info["distances"] = seen.all("metric_distances")
    benchmark.pedantic(call, rounds=ROUNDS, iterations=1)


@pytest.mark.gpu
@pytest.mark.parametrize("peer", ("fastgsl", "fastgsl_dense", "monai"))
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("workload", tuple(WORKLOADS))
def test_surface_metric_cuda(benchmark, workload, metric, peer):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (none present on this machine)")
    if peer == "monai":
        try:
            import cucim  # noqa: F401
        except ImportError:
            pytest.skip("MONAI's GPU path needs cuCIM, which is not installed")
    call = make_call(peer, workload, metric, device="cuda")
    with observe.engines() as seen:
        call()
    B, C, shape = WORKLOADS[workload]
    benchmark.group = f"{metric} {B}x{C}x{'x'.join(map(str, shape))} cuda ({torch.cuda.get_device_name()})"
    benchmark.extra_info["distances"] = seen.all("metric_distances")
    benchmark.pedantic(call, rounds=ROUNDS, iterations=1)


def main():
    from fastgsl.ops import edt

    only = os.environ.get("FASTGSL_BENCH_WORKLOADS")
    workloads = only.split(",") if only else list(WORKLOADS)
    rows, paths, paths_of = [], {}, {}
    for workload in workloads:
        for metric in METRICS:
            res = {}
            for peer in PEERS:
                if _skip_reason(peer, metric):
                    continue
                call = make_call(peer, workload, metric)
                with observe.engines() as seen:
                    value = call()
                if peer.startswith("fastgsl"):
                    paths.setdefault(peer, set()).update(seen.all("metric_distances"))
                if peer == "fastgsl":
                    paths_of[(workload, metric)] = set(seen.all("metric_distances"))
                times = []
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t0)
                res[peer] = (min(times), sorted(times)[len(times) // 2], np.asarray(torch.as_tensor(value).cpu()))
            rows.append((workload, metric, res))
    print(f"HD95 / ASD, spacing {SPACING}, device {DEVICE}, {torch.get_num_threads()} threads, "
          f"rounds {ROUNDS}; distances (sparse = k-d tree, dense = EDT engine {edt.engine_name(DEVICE)}): "
          + ", ".join(f"{p} {'+'.join(sorted(v))}" for p, v in paths.items()))
    print("edge voxels / foreground voxels (target): " + ", ".join(
        f"{w} {edge_fraction(masks(w)[1][:, 0 if masks(w)[2] else 1:]):.0%}" for w in workloads))
    print("| workload | metric | peer | min (s) | median (s) | MONAI / peer | SimpleITK / peer | max |diff| vs ref |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for workload, metric, res in rows:
        B, C, shape = WORKLOADS[workload]
        name = f"{B}x{C}x{'x'.join(map(str, shape))}"
        for peer, (tmin, tmed, val) in res.items():
            ref = res["sitk" if peer in ("fastgsl_paper", "sitk") else "monai"][2] if (
                "sitk" in res or peer not in ("fastgsl_paper", "sitk")) else val
            ratio = lambda other: f"{res[other][1] / tmed:.2f}x" if other in res else "-"
            print(f"| {name} | {metric} | {peer} | {tmin:.3f} | {tmed:.3f} | {ratio('monai')} | {ratio('sitk')} | "
                  f"{np.nanmax(np.abs(val - ref)):.2e} |")
    print("\ncost model (auto) against the faster forced path, median times:")
    for workload, metric, res in rows:
        if {"fastgsl", "fastgsl_dense", "fastgsl_sparse"} <= set(res):
            best = min(("dense", res["fastgsl_dense"][1]), ("sparse", res["fastgsl_sparse"][1]), key=lambda x: x[1])
            print(f"  {workload} {metric}: auto took {'+'.join(sorted(paths_of[(workload, metric)]))} in "
                  f"{res['fastgsl'][1]:.3f} s; the faster forced path was {best[0]} ({best[1]:.3f} s)")


if __name__ == "__main__":
    main()
