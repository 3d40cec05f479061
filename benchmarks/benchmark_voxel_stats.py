"""Benchmarks of the fused voxel-statistics kernels (``fastgsl/ops/voxel_stats/triton_passes.py``).

Run (not collected by default; ``testpaths`` is ``tests``)::

    pytest benchmarks/benchmark_voxel_stats.py --benchmark-only -s        # GPU: kernels + peers; CPU: model + host
    python benchmarks/benchmark_voxel_stats.py [bandwidth_TBps]            # just the bytes-moved model

Three parts:

* **Bytes-moved model** (runs anywhere).  For each pass, the bytes read and written per voxel (a voxel = one
  spatial position, all C channels), and the roofline time ``bytes / bandwidth`` of a workload (default H200 HBM3e,
  4.8 TB/s).  The statistics pass reads the logits, the labels (or float target) and, when a DTM stat is asked
  for, the DTM (and the predicted DTM for a two-sided Hausdorff term); its writes (``B x programs x C x K`` fp32
  partials) are negligible.  The gradient pass reads the same, the DTM only for stats whose gradient involves
  it, and writes grad-logits.
* **GPU** (skipped with the reason where there is no CUDA device): per workload, achieved GB/s and % of the
  roofline of each kernel pass; time and peak extra memory of fused Dice-CE + GSL forward + backward against the
  naive PyTorch formula, MONAI ``DiceCELoss`` and MIST ``GenSurfLoss``, all measured in the same run; ratios are
  printed by ``test_gpu_summary``.
* **CPU** figures of the PyTorch host path against the same peers on a smaller volume (the Triton interpreter's
  timings mean nothing, so the kernels are not timed on CPU).

Workloads: 2x4x128^3 (BraTS patch), 2x2x256x256x128 (LiTS patch), 2-D 16x4x512x512.
"""
from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from fastgsl.ops.voxel_stats import CE, D2, DP, HAUS, I, K, SP, SP2, ST, ST2, SURF, StatSpec  # noqa: F401
from benchmarks.peak_memory import cuda_peak_extra_bytes

H200_BW = 4.8e12  # bytes/s, HBM3e (NVIDIA H200 datasheet)
WORKLOADS = {
    "2x4x128^3": (2, 4, 128, 128, 128),
    "2x2x256x256x128": (2, 2, 256, 256, 128),
    "2d-16x4x512x512": (16, 4, 512, 512),
}
#: stats each loss needs (as fastgsl.losses defines them: DiceCE squared_pred=True, GSL, BL, HD)
DICECE = frozenset({I, SP2, ST2, CE})
LOSS_NEEDS = {
    "DiceCE": DICECE,
    "DiceCE+GSL": DICECE | {SURF, D2},
    "DiceCE+BL": DICECE | {DP},
    "DiceCE+HD(2-sided)": DICECE | {HAUS},
}
HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device: GPU figures (GB/s, % roofline, time and memory vs "
                                              "MONAI/MIST/naive) need one; the bytes-moved model still runs")

DTM_FWD = frozenset({SURF, D2, DP, HAUS})
DTM_BWD = frozenset({SURF, DP, HAUS})  # D2 does not depend on P


# ------------------------------------------------------------------------------------------------------------
# Bytes-moved model.
# ------------------------------------------------------------------------------------------------------------

def bytes_per_voxel(C: int, needs, *, logit_bytes=4, label_bytes=8, float_target_bytes=None, dtm_bytes=4,
                    two_sided=False):
    """``(stats_pass, grad_pass)`` bytes moved per voxel (one spatial position, all C channels).

    ``float_target_bytes`` replaces the integer label map (``label_bytes``, one value a voxel) by a float
    ``(B, C, *sp)`` target.  ``two_sided`` adds the predicted DTM read by the two-sided Hausdorff stat.
    """
    needs = frozenset(needs)
    target = C * float_target_bytes if float_target_bytes else label_bytes
    dp = C * dtm_bytes if (two_sided and HAUS in needs) else 0
    fwd = C * logit_bytes + target + (C * dtm_bytes + dp if needs & DTM_FWD else 0)
    bwd = C * logit_bytes + target + (C * dtm_bytes + dp if needs & DTM_BWD else 0) + C * logit_bytes
    return fwd, bwd


def bytes_model_table(bandwidth=H200_BW, label_bytes=8, logit_bytes=4):
    rows = []
    for wname, shape in WORKLOADS.items():
        B, C = shape[:2]
        vox = B * math.prod(shape[2:])
        for lname, needs in LOSS_NEEDS.items():
            fwd, bwd = bytes_per_voxel(C, needs, logit_bytes=logit_bytes, label_bytes=label_bytes,
                                       two_sided="2-sided" in lname)
            rows.append(dict(workload=wname, loss=lname, fwd_B_per_voxel=fwd, bwd_B_per_voxel=bwd,
                             fwd_MB=fwd * vox / 1e6, bwd_MB=bwd * vox / 1e6,
                             fwd_roofline_us=fwd * vox / bandwidth * 1e6,
                             bwd_roofline_us=bwd * vox / bandwidth * 1e6,
                             total_roofline_us=(fwd + bwd) * vox / bandwidth * 1e6))
    return rows


def format_table(rows, keys):
    widths = {k: max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.rjust(widths[k]) for k in keys)]
    lines += ["  ".join(_fmt(r[k]).rjust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def _fmt(v):
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def print_bytes_model(bandwidth=H200_BW):
    for lb, lbl in ((8, "int64 labels"), (1, "uint8 labels")):
        print(f"\nbytes-moved model, fp32 logits, fp32 DTM, {lbl}, roofline at {bandwidth / 1e12:.2f} TB/s")
        print(format_table(bytes_model_table(bandwidth, label_bytes=lb),
                           ["workload", "loss", "fwd_B_per_voxel", "bwd_B_per_voxel", "fwd_MB", "bwd_MB",
                            "fwd_roofline_us", "bwd_roofline_us", "total_roofline_us"]))


def test_bytes_model(benchmark):
    """Records the model (extra_info) and prints it; the timed function is the model itself (microseconds)."""
    rows = benchmark(bytes_model_table)
    # sanity of the model: DiceCE+GSL on BraTS, fp32 logits, int64 labels:
    # fwd = 4*4 + 8 + 4*4 = 40 B/voxel, bwd = 40 + 16 = 56 B/voxel
    r = next(r for r in rows if r["workload"] == "2x4x128^3" and r["loss"] == "DiceCE+GSL")
    assert (r["fwd_B_per_voxel"], r["bwd_B_per_voxel"]) == (40, 56)
    benchmark.extra_info["bandwidth_Bps"] = H200_BW
    benchmark.extra_info["rows"] = rows
    print_bytes_model()


# ------------------------------------------------------------------------------------------------------------
# Inputs and the compared implementations.
# ------------------------------------------------------------------------------------------------------------

def make_inputs(shape, device, dtype=torch.float32, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    B, C, *sp = shape
    z = torch.randn(shape, device=device, dtype=torch.float32, generator=g).to(dtype)
    labels = torch.randint(0, C, (B, *sp), device=device, generator=g)
    dtm = torch.randn(shape, device=device, dtype=torch.float32, generator=g) * 10
    return z, labels, dtm


def naive_dicece_gsl(z, labels, dtm, alpha=0.5):
    """Dice-CE + GSL written the obvious way: one-hot, full-size probability tensor, autograd."""
    C = z.shape[1]
    dims = tuple(range(2, z.ndim))
    p = torch.softmax(z.float(), 1)
    t = F.one_hot(labels, C).movedim(-1, 1).float()
    inter = (p * t).sum(dims)
    dice = (1 - (2 * inter + 1e-5) / ((p * p).sum(dims) + (t * t).sum(dims) + 1e-5)).mean()
    ce = F.cross_entropy(z.float(), labels)
    gsl = (1 - ((dtm * (1 - t - p)) ** 2).sum(dims) / ((dtm * dtm).sum(dims) + 1e-6)).mean()
    return alpha * (dice + ce) + (1 - alpha) * gsl


def implementations(ndim):
    """name -> factory returning ``loss(z, labels, dtm)``; peers that cannot run the case are left out."""
    from fastgsl.losses import CompositeLoss, DiceCELoss, GeneralizedSurfaceLoss

    impls = {
        "fastgsl DiceCE+GSL": lambda: CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5),
        "naive torch DiceCE+GSL": lambda: naive_dicece_gsl,
    }
    try:
        from monai.losses import DiceCELoss as MonaiDiceCE

        def monai_factory():
            m = MonaiDiceCE(to_onehot_y=True, softmax=True, squared_pred=True)
            return lambda z, lab, dtm: m(z, lab.unsqueeze(1))

        impls["MONAI DiceCELoss"] = monai_factory
    except ImportError:
        pass
    if ndim == 3:  # MIST's GSL is 3-D only
        try:
            from mist.loss_functions.losses.generalized_surface import GenSurfLoss

            def mist_factory():
                m = GenSurfLoss()
                return lambda z, lab, dtm: m(lab.unsqueeze(1), z, dtm=dtm, alpha=0.5)

            impls["MIST GenSurfLoss"] = mist_factory
        except ImportError:
            pass
    return impls


# ------------------------------------------------------------------------------------------------------------
# GPU: kernel bandwidth and end-to-end comparisons.
# ------------------------------------------------------------------------------------------------------------

def cuda_ms(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def _fwd_bwd_step(loss, z, labels, dtm):
    def step():
        z.grad = None
        loss(z, labels, dtm).backward()
    return step


@gpu
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("pass_", ["stats", "grad"])
def test_kernel_bandwidth(benchmark, workload, pass_, monkeypatch):
    """One kernel pass of Dice-CE + GSL: achieved GB/s and % of the roofline (extra_info)."""
    from fastgsl.ops.voxel_stats import triton_passes as kv

    shape = WORKLOADS[workload]
    z, labels, dtm = make_inputs(shape, "cuda")
    spec = StatSpec("softmax", LOSS_NEEDS["DiceCE+GSL"])
    gs = torch.randn(shape[0], shape[1], K, device="cuda")
    if pass_ == "stats":
        fn = lambda: kv.voxel_stats_forward(z, labels, dtm, None, spec)  # noqa: E731
    else:
        fn = lambda: kv.voxel_stats_backward(gs, z, labels, dtm, None, spec)  # noqa: E731
    fwd_b, bwd_b = bytes_per_voxel(shape[1], spec.needs, label_bytes=labels.element_size())
    moved = (fwd_b if pass_ == "stats" else bwd_b) * shape[0] * math.prod(shape[2:])
    benchmark.group = f"kernel {pass_} pass"
    benchmark.pedantic(lambda: (fn(), torch.cuda.synchronize()), rounds=20, warmup_rounds=3, iterations=1)
    ms = cuda_ms(fn)
    gbps = moved / (ms * 1e-3) / 1e9
    benchmark.extra_info.update(gpu=torch.cuda.get_device_name(), bytes=moved, ms=ms, GBps=gbps,
                                roofline_pct=100 * gbps * 1e9 / H200_BW)


@gpu
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("impl", ["fastgsl DiceCE+GSL", "naive torch DiceCE+GSL", "MONAI DiceCELoss",
                                  "MIST GenSurfLoss"])
def test_fwd_bwd(benchmark, workload, impl, monkeypatch):
    """Forward + backward of one loss step; pytest-benchmark groups the peers of a workload together."""
    monkeypatch.setenv("FASTGSL_BACKEND", "auto")
    shape = WORKLOADS[workload]
    impls = implementations(len(shape) - 2)
    if impl not in impls:
        pytest.skip(f"{impl} cannot run a {len(shape) - 2}-D workload (or is not installed)")
    z, labels, dtm = make_inputs(shape, "cuda")
    z.requires_grad_()
    step = _fwd_bwd_step(impls[impl](), z, labels, dtm)
    benchmark.group = f"fwd+bwd {workload}"
    benchmark.pedantic(lambda: (step(), torch.cuda.synchronize()), rounds=10, warmup_rounds=2, iterations=1)
    extra = cuda_peak_extra_bytes(step)
    benchmark.extra_info.update(gpu=torch.cuda.get_device_name(), peak_extra_MiB=extra / 2**20,
                                peak_extra_over_grad=extra / (z.numel() * z.element_size()))


@gpu
def test_gpu_summary(monkeypatch):
    """One table, every implementation measured in the same run: ms, GB/s, % roofline, peak memory, ratios."""
    monkeypatch.setenv("FASTGSL_BACKEND", "auto")
    rows = []
    for wname, shape in WORKLOADS.items():
        z, labels, dtm = make_inputs(shape, "cuda")
        z.requires_grad_()
        fwd_b, bwd_b = bytes_per_voxel(shape[1], LOSS_NEEDS["DiceCE+GSL"], label_bytes=labels.element_size())
        moved = (fwd_b + bwd_b) * shape[0] * math.prod(shape[2:])
        grad_bytes = z.numel() * z.element_size()
        res = {}
        for name, factory in implementations(len(shape) - 2).items():
            step = _fwd_bwd_step(factory(), z, labels, dtm)
            ms = cuda_ms(step, iters=10)
            res[name] = (ms, cuda_peak_extra_bytes(step))
        f_ms = res["fastgsl DiceCE+GSL"][0]
        for name, (ms, mem) in res.items():
            rows.append(dict(workload=wname, impl=name, ms=ms,
                             GBps=moved / (ms * 1e-3) / 1e9 if name.startswith("fastgsl") else float("nan"),
                             roofline_pct=100 * moved / (ms * 1e-3) / H200_BW if name.startswith("fastgsl")
                             else float("nan"),
                             speedup_of_fastgsl=ms / f_ms, peak_extra_MiB=mem / 2**20,
                             peak_over_grad=mem / grad_bytes))
        del z, labels, dtm
        torch.cuda.empty_cache()
    print(f"\nGPU: {torch.cuda.get_device_name()}  (roofline at {H200_BW / 1e12} TB/s, fp32 logits, int64 labels)")
    print(format_table(rows, ["workload", "impl", "ms", "GBps", "roofline_pct", "speedup_of_fastgsl",
                              "peak_extra_MiB", "peak_over_grad"]))


# ------------------------------------------------------------------------------------------------------------
# CPU figures (host path; the Triton interpreter is not timed).
# ------------------------------------------------------------------------------------------------------------

CPU_SHAPE = (1, 4, 48, 48, 48)


@pytest.mark.parametrize("impl", ["fastgsl DiceCE+GSL", "naive torch DiceCE+GSL", "MONAI DiceCELoss",
                                  "MIST GenSurfLoss"])
def test_cpu_fwd_bwd(benchmark, impl, monkeypatch):
    monkeypatch.setenv("FASTGSL_BACKEND", "torch")
    impls = implementations(3)
    if impl not in impls:
        pytest.skip(f"{impl} is not installed")
    z, labels, dtm = make_inputs(CPU_SHAPE, "cpu")
    z.requires_grad_()
    step = _fwd_bwd_step(impls[impl](), z, labels, dtm)
    benchmark.group = f"cpu fwd+bwd {'x'.join(map(str, CPU_SHAPE))} ({torch.get_num_threads()} threads)"
    benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)


if __name__ == "__main__":
    print_bytes_model(float(sys.argv[1]) * 1e12 if len(sys.argv) > 1 else H200_BW)
