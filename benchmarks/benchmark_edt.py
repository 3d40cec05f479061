"""Benchmarks of the exact signed DTM (``kernels/edt_kernel.cu`` through ``fastgsl.ops.edt`` / ``fastgsl.dtm``).

Run (not collected by default; ``testpaths`` is ``tests``)::

    pytest benchmarks/benchmark_edt.py --benchmark-only -s

Workloads, each timed in the same run against its peers:

* ``2x4x128^3``: the signed DTM of every class of a 2-item, 4-class 128^3 label batch (8 maps);
* ``512x512x128``: the signed DTM of one 512x512x128 mask.

Peers, per convention:

* ``itk``: SimpleITK ``SignedMaurerDistanceMap`` (multithreaded; the paper's and MIST's DTM) - one call per map;
* ``edt``: scipy ``distance_transform_edt`` (single-threaded), ``EDT(~m) - EDT(m)``; the ``edt`` package's
  ``sdf`` (multithreaded, ``parallel=`` threads);
* on a GPU only (skipped with the reason elsewhere): fastgsl's CuPy engine, cuCIM ``distance_transform_edt``
  called once per map (its API takes no batch) and MONAI's ``distance_transform_edt`` wrapper.

CPU thread count: fastgsl uses ``torch.get_num_threads()``; SimpleITK its global default; ``edt`` gets the same
number; scipy is single-threaded.  The module's ``summary`` fixture prints the ratios of the medians (``-s`` to see
them). Peer timings include building each class mask and converting the result to an array (what a user runs).

Memory floor: ``copy f64`` is a torch copy of one float64 per voxel of every map (the size of the EDT's float64
workspace: 8 bytes read and 8 written per voxel), timed in the same run; every time is also given in ns per voxel of
every map.  The passes read and write that workspace three times, so about 3x the copy is what a memory-bound EDT
would take.

``python -m benchmarks.benchmark_edt`` times the itk convention (fastgsl, SimpleITK, the copy) in alternating
rounds, so that load on a shared machine falls on all three alike, and prints a Markdown table.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastgsl.ops.edt as E
from fastgsl import observe
from fastgsl.dtm import labels_to_dtm, signed_distance

THREADS = torch.get_num_threads()
RESULTS: dict[tuple[str, str], float] = {}
FAST = int(os.environ.get("FASTGSL_BENCH_ROUNDS", "3"))


def smooth_labels(shape, classes, seed=0):
    """Smooth random label map: argmax of upsampled low-resolution noise (blob-like objects, borders touched)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, classes) + tuple(max(2, s // 16) for s in shape), generator=g)
    up = F.interpolate(low, size=shape, mode="trilinear" if len(shape) == 3 else "bilinear", align_corners=False)
    return up[0].argmax(0)


@pytest.fixture(scope="module")
def batch():
    return torch.stack([smooth_labels((128, 128, 128), 4, seed=s) for s in range(2)])


@pytest.fixture(scope="module")
def volume():
    return smooth_labels((512, 512, 128), 2, seed=7) == 1


#: voxels of every map of each workload (for ns per voxel)
VOXELS = {"2x4x128^3": 2 * 4 * 128 ** 3, "512x512x128": 512 * 512 * 128}


def copy_floor(workload):
    """A torch copy of one float64 per voxel of every map (the memory floor of the table)."""
    src = torch.rand(VOXELS[workload], dtype=torch.float64)
    dst = torch.empty_like(src)
    dst.copy_(src)
    return lambda: dst.copy_(src)


def _record(benchmark, workload, name):
    RESULTS[(workload, name)] = benchmark.stats.stats.median


def _run(benchmark, fn, rounds):
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)


# ------------------------------------------------------------------------------------------------ peers
def sitk_maps(masks):
    import SimpleITK as sitk
    out = []
    for m in masks:
        img = sitk.GetImageFromArray(m.astype(np.uint8))
        d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
        out.append(sitk.GetArrayFromImage(d))
    return out


def scipy_maps(masks):
    from scipy import ndimage
    return [(ndimage.distance_transform_edt(~m) - ndimage.distance_transform_edt(m)).astype(np.float32)
            for m in masks]


def edt_pkg_maps(masks):
    import edt
    return [edt.sdf(m.astype(np.uint8), black_border=False, parallel=THREADS) for m in masks]


def class_masks(labels: torch.Tensor, classes: int):
    lab = labels.numpy()
    return [lab[b] == c for b in range(lab.shape[0]) for c in range(classes)]


# ------------------------------------------------------------------------------------------------ CPU
@pytest.mark.benchmark(group="2x4x128^3 itk")
def test_batch_itk_fastgsl(benchmark, batch):
    with observe.engines() as seen:
        out = _run(benchmark, lambda: labels_to_dtm(batch, 4, convention="itk"), FAST)
    assert set(seen.all("edt")) == {"host"} and out.shape == (2, 4, 128, 128, 128)
    _record(benchmark, "2x4x128^3", "fastgsl itk")


@pytest.mark.benchmark(group="2x4x128^3 itk")
def test_batch_itk_simpleitk(benchmark, batch):
    import SimpleITK as sitk
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() >= 1
    _run(benchmark, lambda: sitk_maps(class_masks(batch, 4)), FAST)
    _record(benchmark, "2x4x128^3", "SimpleITK")


@pytest.mark.benchmark(group="2x4x128^3 edt")
def test_batch_edt_fastgsl(benchmark, batch):
    _run(benchmark, lambda: labels_to_dtm(batch, 4, convention="edt"), FAST)
    _record(benchmark, "2x4x128^3", "fastgsl edt")


@pytest.mark.benchmark(group="2x4x128^3 edt")
def test_batch_edt_scipy(benchmark, batch):
    _run(benchmark, lambda: scipy_maps(class_masks(batch, 4)), 1)
    _record(benchmark, "2x4x128^3", "scipy")


@pytest.mark.benchmark(group="2x4x128^3 edt")
def test_batch_edt_edt_package(benchmark, batch):
    pytest.importorskip("edt", reason="the edt package (a peer) is not installed")
    _run(benchmark, lambda: edt_pkg_maps(class_masks(batch, 4)), FAST)
    _record(benchmark, "2x4x128^3", "edt package")


@pytest.mark.benchmark(group="2x4x128^3 itk")
def test_batch_copy_floor(benchmark):
    _run(benchmark, copy_floor("2x4x128^3"), FAST)
    _record(benchmark, "2x4x128^3", "copy f64")


@pytest.mark.benchmark(group="512x512x128 itk")
def test_volume_copy_floor(benchmark):
    _run(benchmark, copy_floor("512x512x128"), FAST)
    _record(benchmark, "512x512x128", "copy f64")


@pytest.mark.benchmark(group="512x512x128 itk")
def test_volume_itk_fastgsl(benchmark, volume):
    with observe.engines() as seen:
        _run(benchmark, lambda: signed_distance(volume, convention="itk"), FAST)
    assert set(seen.all("edt")) == {"host"}
    _record(benchmark, "512x512x128", "fastgsl itk")


@pytest.mark.benchmark(group="512x512x128 itk")
def test_volume_itk_simpleitk(benchmark, volume):
    _run(benchmark, lambda: sitk_maps([volume.numpy()]), FAST)
    _record(benchmark, "512x512x128", "SimpleITK")


@pytest.mark.benchmark(group="512x512x128 edt")
def test_volume_edt_fastgsl(benchmark, volume):
    _run(benchmark, lambda: signed_distance(volume, convention="edt"), FAST)
    _record(benchmark, "512x512x128", "fastgsl edt")


@pytest.mark.benchmark(group="512x512x128 edt")
def test_volume_edt_scipy(benchmark, volume):
    _run(benchmark, lambda: scipy_maps([volume.numpy()]), 1)
    _record(benchmark, "512x512x128", "scipy")


@pytest.mark.benchmark(group="512x512x128 edt")
def test_volume_edt_edt_package(benchmark, volume):
    pytest.importorskip("edt", reason="the edt package (a peer) is not installed")
    _run(benchmark, lambda: edt_pkg_maps([volume.numpy()]), FAST)
    _record(benchmark, "512x512x128", "edt package")


# ------------------------------------------------------------------------------------------------ GPU
def _gpu_reason():
    if not torch.cuda.is_available():
        return "no CUDA device"
    return E.cupy_unavailable_reason()


gpu = pytest.mark.skipif(_gpu_reason() is not None, reason=f"GPU benchmarks need CUDA + CuPy: {_gpu_reason()}")


def _cuda_timed(benchmark, fn, rounds=20):
    fn()  # compile / warm the caching allocator
    torch.cuda.synchronize()

    def step():
        fn()
        torch.cuda.synchronize()
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=2)


@gpu
@pytest.mark.benchmark(group="gpu 2x4x128^3")
def test_gpu_batch_fastgsl(benchmark, batch):
    lab = batch.cuda()
    _cuda_timed(benchmark, lambda: labels_to_dtm(lab, 4, convention="itk"))
    _record(benchmark, "gpu 2x4x128^3", "fastgsl cupy")


@gpu
@pytest.mark.benchmark(group="gpu 2x4x128^3")
def test_gpu_batch_cucim(benchmark, batch):
    cucim = pytest.importorskip("cucim.core.operations.morphology", reason="cuCIM not installed")
    import cupy
    masks = [cupy.asarray((batch[b] == c).cuda()) for b in range(2) for c in range(4)]

    def run():
        return [cucim.distance_transform_edt(~m) - cucim.distance_transform_edt(m) for m in masks]
    _cuda_timed(benchmark, run, rounds=5)
    _record(benchmark, "gpu 2x4x128^3", "cuCIM per map")


@gpu
@pytest.mark.benchmark(group="gpu 2x4x128^3")
def test_gpu_batch_monai(benchmark, batch):
    from monai.transforms.utils import distance_transform_edt
    masks = [(batch[b] == c).cuda() for b in range(2) for c in range(4)]

    def run():
        return [distance_transform_edt(~m) - distance_transform_edt(m) for m in masks]
    _cuda_timed(benchmark, run, rounds=5)
    _record(benchmark, "gpu 2x4x128^3", "MONAI per map")


@gpu
@pytest.mark.benchmark(group="gpu 512x512x128")
def test_gpu_volume_fastgsl(benchmark, volume):
    v = volume.cuda()
    _cuda_timed(benchmark, lambda: signed_distance(v, convention="itk"))
    _record(benchmark, "gpu 512x512x128", "fastgsl cupy")


# ------------------------------------------------------------------------------------------------ summary
@pytest.fixture(scope="module", autouse=True)
def summary():
    """Prints the thread counts and the ratios of the medians once the module's benchmarks have run (``-s``)."""
    yield
    if not RESULTS:
        return
    import SimpleITK as sitk
    print(f"\nCPU threads: fastgsl {THREADS} (torch.get_num_threads), SimpleITK "
          f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}, edt package {THREADS}, scipy 1")
    for workload in dict.fromkeys(w for w, _ in RESULTS):
        rows = {n: t for (w, n), t in RESULTS.items() if w == workload}
        peer = "SimpleITK" if "SimpleITK" in rows else "cuCIM per map"
        for name, t in rows.items():
            ratio = f"  {t / rows[peer]:6.2f} x {peer}" if peer in rows else ""
            per = f"  {t / VOXELS[workload] * 1e9:6.1f} ns/voxel" if workload in VOXELS else ""
            print(f"{workload:>16}  {name:<14} {t * 1e3:10.1f} ms{ratio}{per}")


def main(rounds: int = 5):
    import time

    import SimpleITK as sitk
    batch_labels = torch.stack([smooth_labels((128, 128, 128), 4, seed=s) for s in range(2)])
    vol = smooth_labels((512, 512, 128), 2, seed=7) == 1
    workloads = {
        "2x4x128^3": {"fastgsl": lambda: labels_to_dtm(batch_labels, 4, convention="itk"),
                      "SimpleITK": lambda: sitk_maps(class_masks(batch_labels, 4)),
                      "copy f64": copy_floor("2x4x128^3")},
        "512x512x128": {"fastgsl": lambda: signed_distance(vol, convention="itk"),
                        "SimpleITK": lambda: sitk_maps([vol.numpy()]),
                        "copy f64": copy_floor("512x512x128")}}
    with observe.engines() as seen:
        for fns in workloads.values():
            fns["fastgsl"]()  # builds the host library on first use
    assert set(seen.all("edt")) == {"host"}
    print(f"Signed DTM, itk convention, CPU: fastgsl {THREADS} threads (torch.get_num_threads), SimpleITK "
          f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} threads; medians of {rounds} alternating rounds")
    print("| workload | fastgsl (ms) | SimpleITK (ms) | fastgsl / SimpleITK | fastgsl ns/voxel | copy f64 ns/voxel |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for workload, fns in workloads.items():
        times = {name: [] for name in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}
        nv = VOXELS[workload]
        print(f"| {workload} | {med['fastgsl'] * 1e3:.0f} | {med['SimpleITK'] * 1e3:.0f} | "
              f"{med['fastgsl'] / med['SimpleITK']:.2f}x | {med['fastgsl'] / nv * 1e9:.1f} | "
              f"{med['copy f64'] / nv * 1e9:.2f} |")


if __name__ == "__main__":
    main()
