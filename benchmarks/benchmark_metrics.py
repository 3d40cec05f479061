"""HD95 and ASD: fastgsl.metrics against MONAI and a SimpleITK loop, in the same run.

Workloads:

* ``batch``: one-hot masks 2x3x128^3 (background dropped, so 2 items x 2 classes = 4 pairs);
* ``pair``: one 512x512x128 pair.

The masks are ellipsoids with a wavy surface; the prediction is shifted, rescaled and carries a small false
positive far away, so that HD, HD95 and ASD all differ.  Peers:

* ``fastgsl``: ``convention="monai"`` (the numbers MONAI gives), on ``FASTGSL_BENCH_DEVICE`` (default cpu), with the
  default distance path (``auto``: the k-d tree on the CPU, the dense EDT on a GPU);
* ``fastgsl_dense``: the same with ``FASTGSL_METRIC_DISTANCES=dense``, the batched EDT on every device;
* ``fastgsl_paper``: ``convention="paper"`` (the numbers the SimpleITK loop gives);
* ``monai``: ``compute_hausdorff_distance(percentile=95)`` / ``compute_average_surface_distance(symmetric=True)``
  (CPU: scipy erosion + KD-tree per pair; on a GPU with cuCIM installed, cuCIM's erosion and EDT);
* ``sitk``: the paper's evaluation, a Python loop over pairs of ``SignedMaurerDistanceMap``, ``LabelContour`` and
  ``np.percentile``.

    pytest benchmarks/benchmark_metrics.py --benchmark-columns=min,median,rounds
    python -m benchmarks.benchmark_metrics          # a markdown table with the ratios

``FASTGSL_BENCH_ROUNDS`` (default 3) sets the rounds; ``FASTGSL_BENCH_DEVICE=cuda`` runs fastgsl and MONAI on the
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
WORKLOADS = {"batch": (2, 3, (128, 128, 128)), "pair": (1, 1, (512, 512, 128))}
METRICS = ("hd95", "asd")
PEERS = ("fastgsl", "fastgsl_dense", "fastgsl_paper", "monai", "sitk")
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


@functools.lru_cache(maxsize=None)
def masks(workload: str):
    """(pred, target) bool tensors ``(B, C, *spatial)``, and include_background."""
    B, C, shape = WORKLOADS[workload]
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
            if metric == "hd95":
                out[b, c - first] = max(np.percentile(np.maximum(dt[p], 0), 95),
                                        np.percentile(np.maximum(dp[t], 0), 95))
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
        if metric == "hd95":
            metric_fn = lambda: metrics.hausdorff_distance(pred, target, spacing=SPACING, percentile=95,
                                                           include_background=bg, convention=conv)
        else:
            metric_fn = lambda: metrics.average_surface_distance(pred, target, spacing=SPACING,
                                                                 include_background=bg, convention=conv)
        path = "dense" if peer == "fastgsl_dense" else os.environ.get("FASTGSL_METRIC_DISTANCES", "auto")

        def fn():
            with mock.patch.dict(os.environ, {"FASTGSL_METRIC_DISTANCES": path}):
                return metric_fn()
    elif peer == "monai":
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

        if metric == "hd95":
            fn = lambda: compute_hausdorff_distance(pred, target, percentile=95, spacing=SPACING,
                                                    include_background=bg)
        else:
            fn = lambda: compute_average_surface_distance(pred, target, symmetric=True, spacing=SPACING,
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


def _skip_reason(peer: str):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        return "FASTGSL_BENCH_DEVICE=cuda but no CUDA device is present"
    if peer == "sitk" and DEVICE == "cuda":
        return "SimpleITK runs on the CPU only"
    return None


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("workload", tuple(WORKLOADS))
def test_surface_metric(benchmark, workload, metric, peer):
    reason = _skip_reason(peer)
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

    rows, paths = [], {}
    for workload in WORKLOADS:
        for metric in METRICS:
            res = {}
            for peer in PEERS:
                if _skip_reason(peer):
                    continue
                call = make_call(peer, workload, metric)
                with observe.engines() as seen:
                    value = call()
                if peer.startswith("fastgsl"):
                    paths.setdefault(peer, set()).update(seen.all("metric_distances"))
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
                  f"{np.abs(val - ref).max():.2e} |")


if __name__ == "__main__":
    main()
