"""One-shot GPU run: the CUDA tests, the GPU benchmarks against their peers, a short AMP training run, one report.

Made for a GPU that is lent for a few minutes with no network.  One command runs every step, each in its own
child process (a hang or a broken CUDA context in one step cannot stop the others) with its own time budget,
under one global deadline, and writes ``gpu_<UTC stamp>.md`` and ``gpu_<UTC stamp>.json`` into ``--out``
(default ``benchmarks/results``), with the logs in ``gpu_<stamp>_logs/`` (``steps.log``, ``tests.log``, the JUnit
XML files, ``train.log``: seven files in all, within what a lent machine sends back)::

    python -m benchmarks.gpu_suite [--out DIR] [--skip STEP ...] [--deadline SECONDS] [--quick] [--dry-run]

Steps (default budget in seconds; the sum stays under the default deadline of 480 s):

* ``tests`` (180): the CUDA tests with the Triton interpreter off (``TRITON_INTERPRET`` removed from the
  environment; ``tests/conftest.py`` sets it only when there is no CUDA device): ``tests/test_voxel_stats_triton.py``
  whole (on a GPU every test there compiles and runs the real kernels) and ``pytest tests -m gpu`` for the rest;
  ``--tests all`` runs the whole suite instead.  Passed / failed / errors / skipped are counted from pytest's
  JUnit XML, with the name of every failure and every skip reason.
* ``losses`` (60): Dice-CE + GSL forward + backward on fp32 logits 2x4x128^3 (``--quick``: 2x4x64^3) with the
  implementations of ``benchmarks/benchmark_voxel_stats.py`` (fastgsl, the naive formula, MONAI ``DiceCELoss``,
  MIST ``GenSurfLoss``): time (CUDA events), peak memory above the inputs, GB/s and % of the HBM roofline from
  that module's bytes-moved model, and a same-run device-to-device copy of the same bytes.
* ``edt`` (40): the signed DTMs of a 2x4x128^3 label batch (8 maps; ``--quick``: 64^3) with fastgsl
  (``convention="itk"``, what the losses use, and ``"edt"``) against CuPy's ``cupyx.scipy.ndimage.
  distance_transform_edt`` called once per volume, ``EDT(~m) - EDT(m)`` for each map (the quantity of fastgsl's
  ``"edt"`` convention: the largest difference is reported).
* ``metrics`` (75): every metric of ``benchmarks/benchmark_metrics.py`` (HD, HD95, ASD, NSD) on its ``batch``
  and ``folded`` workloads (``--quick``: ``batch`` only) with CUDA tensors: fastgsl (default and dense paths)
  against MONAI.  MONAI computes on the GPU only with cuCIM installed; without it MONAI moves the
  masks to the CPU, which the report says, and the 20x target is then "not measured".
* ``train`` (90): ``python -m fastgsl.train --device cuda --amp bf16`` with GSL, 3 epochs of 20 steps on 8
  generated cases (``--quick``: 1 epoch of 5 steps), in a temporary folder.

Targets (verdict met / not met / not measured, from the measured numbers): the composite loss at >= 80% of the
HBM roofline and >= 10x MIST; the 2x4x128^3 EDTs (``itk``) in <= 1 ms and (``edt``) >= 5x CuPy's per-volume
loop; the metrics >= 20x MONAI on the GPU (the smallest ratio counts).  A peer that cannot be imported is listed
as absent with the error, never dropped.  Exit status: 0 when every step that ran finished, 1 when a step failed,
crashed, ran out of time or was not reached before the deadline, 2 without a CUDA device (unless ``--dry-run``)
or on bad arguments.  Verdicts do not change the exit status.

On a lent machine that has torch, triton and cupy only, the pure-Python peers travel as wheels.  Here, in the
repository root (``.whl/`` is git-ignored; about 58 MB, SimpleITK is 53 MB of it)::

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \\
        monai==1.6.1 mist-medical==2.3.0 nibabel==5.4.2 SimpleITK==2.5.7 surface-distance==0.1

and there (the ``.whl`` folder carried with the working tree)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_suite --out $OUT

MONAI and MIST are the peers; nibabel is needed by the training run; SimpleITK and surface-distance by
``tests/test_dtm.py`` and ``tests/test_metrics.py`` (without them those files are skipped or fail to collect, and
the report counts it).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
STEPS = ("tests", "losses", "edt", "metrics", "train")
#: seconds each step may take; their sum (445) leaves room inside the default deadline for start-up and reports
BUDGETS = {"tests": 180, "losses": 60, "edt": 40, "metrics": 75, "train": 90}
DEFAULT_DEADLINE = 480.0
#: a step is not started with less than this left before the deadline
MIN_START_S = 5.0
#: peer name -> module whose import decides whether the peer can be had
PEER_MODULES = {
    "MONAI": "monai",
    "MIST": "mist.loss_functions.losses.generalized_surface",
    "CuPy": "cupyx.scipy.ndimage",
    "cuCIM": "cucim",
}
#: what the tests and the training run need beyond the device image (the wheels in the module docstring)
SUPPORT_MODULES = {"nibabel": "nibabel", "SimpleITK": "SimpleITK", "surface-distance": "surface_distance"}


# ------------------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class Target:
    """A target of the one-shot GPU run: ``value(results)`` is ``(number, None)`` or ``(None, why not)``."""
    name: str
    step: str
    op: str            # ">=" or "<="
    threshold: float
    unit: str
    value: Callable[[dict], tuple]


def _data(results: dict, step: str):
    """The data of ``step`` if it ran to the end, else ``(None, reason)``."""
    r = results.get(step)
    if r is None:
        return None, f"step {step} not in the results"
    if r.get("status") != "ok":
        return None, f"step {step} {r.get('status')}: {r.get('reason') or 'no reason given'}"
    return r.get("data") or {}, None


def _peer_absent(results: dict, step: str, peer: str):
    p = ((results.get(step) or {}).get("peers") or {}).get(peer)
    if p and p.get("status") != "present":
        return f"{peer} absent: {p.get('reason')}"
    return None


def _pick(*path):
    def value(results):
        data, why = _data(results, path[0])
        if data is None:
            return None, why
        for k in path[1:]:
            if not isinstance(data, dict) or data.get(k) is None:
                return None, f"{'.'.join(path)} was not measured"
            data = data[k]
        return float(data), None
    return value


def _ratio(step, peer, peer_key, own_key):
    def value(results):
        absent = _peer_absent(results, step, peer)
        if absent:
            return None, absent
        data, why = _data(results, step)
        if data is None:
            return None, why
        a, b = data.get(peer_key), data.get(own_key)
        if a is None or b is None or not b > 0:
            return None, f"{peer_key} / {own_key} was not measured"
        return a / b, None
    return value


def _metrics_ratio(results):
    absent = _peer_absent(results, "metrics", "MONAI")
    if absent:
        return None, absent
    data, why = _data(results, "metrics")
    if data is None:
        return None, why
    if not data.get("monai_on_gpu"):
        return None, (f"MONAI did not run on the GPU ({data.get('monai_engine', 'unknown')}); "
                      f"smallest ratio against that: {data.get('min_ratio_vs_monai')}")
    if data.get("min_ratio_vs_monai") is None:
        return None, "no fastgsl / MONAI pair was timed"
    return float(data["min_ratio_vs_monai"]), None


TARGETS = (
    Target("composite loss (Dice-CE + GSL fwd+bwd) % of HBM roofline", "losses", ">=", 80.0, "%",
           _pick("losses", "fastgsl", "roofline_pct")),
    Target("composite loss speed-up over MIST GenSurfLoss", "losses", ">=", 10.0, "x",
           _ratio("losses", "MIST", "mist_ms", "fastgsl_ms")),
    Target("2x4x128^3 signed DTMs (itk), time", "edt", "<=", 1.0, "ms", _pick("edt", "fastgsl_itk_ms")),
    Target("2x4x128^3 signed EDTs, speed-up over CuPy's per-volume loop", "edt", ">=", 5.0, "x",
           _ratio("edt", "CuPy", "cupy_loop_ms", "fastgsl_edt_ms")),
    Target("surface metrics speed-up over MONAI on the GPU (smallest)", "metrics", ">=", 20.0, "x", _metrics_ratio),
)


def verdicts(results: dict, targets=TARGETS, quick: bool = False) -> list[dict]:
    """One row per target: measured value, threshold, and ``met`` / ``not met`` / ``not measured``."""
    rows = []
    for t in targets:
        value, why = t.value(results)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            verdict = "not measured"
            value = None
        else:
            verdict = "met" if (value >= t.threshold if t.op == ">=" else value <= t.threshold) else "not met"
            if quick:
                why = "--quick: smaller workloads than the target is set for"
        rows.append(dict(target=t.name, step=t.step, value=value, op=t.op, threshold=t.threshold, unit=t.unit,
                         verdict=verdict, why=why))
    return rows


# ------------------------------------------------------------------------------------------------ environment
def peer_status(module: str) -> dict:
    """``{"status": "present", "version": ...}`` or ``{"status": "absent", "reason": "<error>"}``."""
    import importlib
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # an ImportError, or a peer broken at import: absent either way, with the error
        return {"status": "absent", "reason": f"{type(e).__name__}: {e}"}
    top = module.split(".")[0]
    version = getattr(sys.modules.get(top, mod), "__version__", None)
    if version is None:
        from importlib import metadata
        dists = metadata.packages_distributions().get(top) or []
        version = metadata.version(dists[0]) if dists else "unknown"
    return {"status": "present", "version": str(version)}


def _version(module: str) -> str:
    p = peer_status(module)
    return p["version"] if p["status"] == "present" else f"absent ({p['reason']})"


def environment() -> dict:
    """The machine: GPU name, driver and CUDA versions, library versions, the commit."""
    import torch
    env = {"python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "torch_cuda": torch.version.cuda, "triton": _version("triton"),
           "cupy": _version("cupy"), "numpy": _version("numpy"),
           "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET")}
    env["peers"] = {name: peer_status(mod) for name, mod in {**PEER_MODULES, **SUPPORT_MODULES}.items()}
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                       timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        env["commit"] = "unknown"
    env["cuda_available"] = torch.cuda.is_available()
    if env["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                   gpu_memory_GiB=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                   capability=f"{p.major}.{p.minor}")
        try:
            import cupy
            env["cuda_driver_api"] = cupy.cuda.runtime.driverGetVersion()
            env["cuda_runtime_cupy"] = cupy.cuda.runtime.runtimeGetVersion()
        except Exception as e:
            env["cuda_driver_api"] = f"unknown ({type(e).__name__}: {e})"
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else \
                f"unknown (nvidia-smi exit {out.returncode})"
        except (OSError, subprocess.SubprocessError, IndexError) as e:
            env["driver"] = f"unknown ({type(e).__name__})"
    else:
        env["gpu"] = "none (no CUDA device)"
    return env


# ------------------------------------------------------------------------------------------------ step workers
# Each runs in a child process (``--worker STEP``) and returns {"status", "data", "peers", "reason"}.

def _child_env() -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the real kernels, never the interpreter
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run_child(cmd: list, timeout: float, log: Path | None = None, cwd=REPO) -> dict:
    """Run ``cmd`` in its own process group; on timeout the whole group is killed.

    Returns ``{"rc", "seconds", "timed_out", "tail"}`` (``tail``: the last 3000 characters of the output)."""
    t0 = time.perf_counter()
    fh = open(log, "a") if log else tempfile.TemporaryFile("w+")
    try:
        fh.write(f"$ {' '.join(map(str, cmd))}\n")
        fh.flush()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=_child_env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = proc.wait()
        fh.flush()
    finally:
        fh.close()
    tail = ""
    if log:
        text = Path(log).read_text(errors="replace")
        tail = text[-3000:]
    return {"rc": rc, "seconds": time.perf_counter() - t0, "timed_out": timed_out, "tail": tail}


def parse_junit(path: Path) -> dict:
    """Counts and names from a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    counts = dict(tests=0, passed=0, failed=0, errors=0, skipped=0)
    failures, skips = [], {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        counts["tests"] += 1
        kinds = {child.tag: child for child in case}
        if "failure" in kinds:
            counts["failed"] += 1
            failures.append(f"FAILED {name}: {(kinds['failure'].get('message') or '').splitlines()[0][:300]}"
                            if kinds["failure"].get("message") else f"FAILED {name}")
        elif "error" in kinds:
            counts["errors"] += 1
            failures.append(f"ERROR {name}: {(kinds['error'].get('message') or '')[:300]}")
        elif "skipped" in kinds:
            counts["skipped"] += 1
            reason = (kinds["skipped"].get("message") or "no reason").strip()[:200]
            skips[reason] = skips.get(reason, 0) + 1
        else:
            counts["passed"] += 1
    return dict(counts, failures=failures, skip_reasons=skips)


def step_tests(args, budget: float, logs: Path) -> dict:
    if args.tests == "all":
        selections = [("all", ["tests"])]
    else:
        selections = [("triton", ["tests/test_voxel_stats_triton.py"]),
                      ("gpu-marked", ["tests", "-m", "gpu", "--ignore=tests/test_voxel_stats_triton.py"])]
    t_end = time.monotonic() + budget
    total = dict(tests=0, passed=0, failed=0, errors=0, skipped=0)
    failures, skips, runs = [], {}, []
    status, reason = "ok", None
    for i, (label, sel) in enumerate(selections):
        xml = logs / f"tests_{label}.xml"
        left = t_end - time.monotonic()
        if left < 1:
            status, reason = "timeout", f"no time left for the {label} selection"
            runs.append({"selection": label, "status": "not run (step budget spent)"})
            continue
        cmd = [sys.executable, "-m", "pytest", *sel, "-q", "-rfEs", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", f"--junitxml={xml}"]
        res = run_child(cmd, left, logs / "tests.log")
        run = {"selection": label, "command": " ".join(map(str, cmd[1:])), "rc": res["rc"],
               "seconds": round(res["seconds"], 1)}
        if res["timed_out"]:
            status, reason = "timeout", f"the {label} selection ran past the step budget"
            run["status"] = "timeout (killed; no counts)"
        elif xml.exists():
            c = parse_junit(xml)
            for k in total:
                total[k] += c[k]
            failures += [f"[{label}] {f}" for f in c["failures"]]
            for r, n in c["skip_reasons"].items():
                skips[r] = skips.get(r, 0) + n
            run.update({k: c[k] for k in total})
            run["status"] = "ran"
        else:
            status, reason = "error", f"pytest ({label}) wrote no JUnit XML (exit {res['rc']}): {res['tail'][-500:]}"
            run["status"] = "no report"
        runs.append(run)
    if status == "ok" and (total["failed"] or total["errors"]):
        status, reason = "failed", f"{total['failed']} failed, {total['errors']} errors"
    if status == "ok" and total["tests"] == 0:
        status, reason = "failed", "no test was collected"
    return {"status": status, "reason": reason,
            "data": dict(total, runs=runs, failures=failures, skip_reasons=skips, mode=args.tests)}


def _wall_ms(fn, rounds: int, warmup: int = 2) -> dict:
    """Median and min wall time of ``fn()`` with a device synchronisation before and after each round."""
    import torch
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "rounds": rounds}


def step_losses(args, budget: float, logs: Path) -> dict:
    import torch
    from benchmarks import benchmark_voxel_stats as BV
    from benchmarks.peak_memory import cuda_peak_extra_bytes
    from fastgsl import observe

    shape = (2, 4, 64, 64, 64) if args.quick else BV.WORKLOADS["2x4x128^3"]
    B, C, *sp = shape
    peers = {p: peer_status(PEER_MODULES[p]) for p in ("MONAI", "MIST")}
    z, labels, dtm = BV.make_inputs(shape, "cuda")
    z.requires_grad_()
    fwd_b, bwd_b = BV.bytes_per_voxel(C, BV.LOSS_NEEDS["DiceCE+GSL"], label_bytes=labels.element_size())
    moved = (fwd_b + bwd_b) * B * math.prod(sp)
    # a same-run copy moving the same bytes (half read, half written): the bandwidth this card really gives
    src = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = BV.cuda_ms(lambda: dst.copy_(src), iters=20)
    del src, dst
    data = {"workload": "x".join(map(str, shape)), "bytes_moved": moved, "fwd_B_per_voxel": fwd_b,
            "bwd_B_per_voxel": bwd_b, "roofline_Bps": BV.H200_BW,
            "roofline_us": moved / BV.H200_BW * 1e6, "copy_ms": copy_ms,
            "copy_GBps": moved / (copy_ms * 1e-3) / 1e9, "impls": {}}
    key = {"fastgsl DiceCE+GSL": "fastgsl", "naive torch DiceCE+GSL": "naive", "MONAI DiceCELoss": "monai",
           "MIST GenSurfLoss": "mist"}
    iters = 5 if args.quick else 20
    for name, factory in BV.implementations(len(sp)).items():
        step = BV._fwd_bwd_step(factory(), z, labels, dtm)
        with observe.engines() as seen:
            step()
        ms = BV.cuda_ms(step, iters=iters)
        row = {"impl": name, "ms": ms, "peak_extra_MiB": cuda_peak_extra_bytes(step) / 2**20,
               "engines": sorted(set(seen.all("voxel_stats")))}
        if key[name] == "fastgsl":
            row["GBps"] = moved / (ms * 1e-3) / 1e9
            row["roofline_pct"] = 100 * moved / (ms * 1e-3) / BV.H200_BW
            row["copy_pct"] = 100 * copy_ms / ms
        data["impls"][name] = row
        data[f"{key[name]}_ms"] = ms
    data["fastgsl"] = data["impls"].get("fastgsl DiceCE+GSL")
    if data["fastgsl"] and "triton" not in data["fastgsl"]["engines"]:
        return {"status": "failed", "peers": peers, "data": data,
                "reason": f"fastgsl answered with {data['fastgsl']['engines']}, not the Triton kernels"}
    return {"status": "ok", "data": data, "peers": peers}


def step_edt(args, budget: float, logs: Path) -> dict:
    import torch
    from benchmarks.benchmark_edt import smooth_labels
    import fastgsl.ops.edt as E
    from fastgsl import observe
    from fastgsl.dtm import labels_to_dtm

    n = 64 if args.quick else 128
    peers = {"CuPy": peer_status(PEER_MODULES["CuPy"])}
    reason = E.cupy_unavailable_reason()
    if reason:
        return {"status": "error", "peers": peers, "data": {},
                "reason": f"fastgsl's CUDA EDT needs CuPy: {reason}"}
    lab = torch.stack([smooth_labels((n, n, n), 4, seed=s) for s in range(2)]).cuda()
    rounds = 5 if args.quick else 20
    data = {"workload": f"2x4x{n}^3 labels (8 maps)"}
    with observe.engines() as seen:
        out_edt = labels_to_dtm(lab, 4, convention="edt")
    data["engine"] = sorted(set(seen.all("edt")))
    data["fastgsl_itk"] = _wall_ms(lambda: labels_to_dtm(lab, 4, convention="itk"), rounds)
    data["fastgsl_edt"] = _wall_ms(lambda: labels_to_dtm(lab, 4, convention="edt"), rounds)
    data["fastgsl_itk_ms"] = data["fastgsl_itk"]["median_ms"]
    data["fastgsl_edt_ms"] = data["fastgsl_edt"]["median_ms"]
    if peers["CuPy"]["status"] == "present":
        import cupy
        from cupyx.scipy.ndimage import distance_transform_edt

        def cupy_loop():
            maps = []
            for b in range(lab.shape[0]):
                for c in range(4):
                    m = cupy.asarray(lab[b] == c)
                    maps.append(distance_transform_edt(~m) - distance_transform_edt(m))
            return maps

        maps = cupy_loop()
        peer = torch.stack([torch.as_tensor(m, device="cuda") for m in maps]).reshape(out_edt.shape)
        data["max_abs_diff_vs_cupy"] = float((peer.float() - out_edt.float()).abs().max())
        data["cupy_loop"] = _wall_ms(cupy_loop, max(3, rounds // 4))
        data["cupy_loop_ms"] = data["cupy_loop"]["median_ms"]
    if "cupy" not in data["engine"]:
        return {"status": "failed", "peers": peers, "data": data,
                "reason": f"fastgsl's EDT answered with {data['engine']}, not the CuPy engine"}
    return {"status": "ok", "data": data, "peers": peers}


def step_metrics(args, budget: float, logs: Path) -> dict:
    import numpy as np
    import torch
    from benchmarks import benchmark_metrics as BM
    from fastgsl import observe

    peers = {p: peer_status(PEER_MODULES[p]) for p in ("MONAI", "cuCIM")}
    on_gpu = peers["MONAI"]["status"] == "present" and peers["cuCIM"]["status"] == "present"
    data = {"monai_on_gpu": on_gpu,
            "monai_engine": "cuCIM on the GPU" if on_gpu else
            ("CPU: MONAI moves CUDA masks to numpy without cuCIM" if peers["MONAI"]["status"] == "present"
             else "absent"),
            "spacing": BM.SPACING, "rows": []}
    rounds = 2 if args.quick else 3
    ratios, t_end = [], time.monotonic() + budget - 10
    # the 512x512x128 pair is left out: MONAI's CPU fallback on it would take most of the step's budget
    workloads = [w for w in (("batch",) if args.quick else ("batch", "folded")) if w in BM.WORKLOADS]
    for workload in workloads:
        for metric in BM.METRICS:
            if time.monotonic() > t_end:
                data.setdefault("not_timed", []).append(f"{workload}/{metric}: step budget nearly spent")
                continue
            vals, times = {}, {}
            for peer in ("fastgsl", "fastgsl_dense", "monai"):
                if peer == "monai" and peers["MONAI"]["status"] != "present":
                    continue
                call = BM.make_call(peer, workload, metric, device="cuda")
                with observe.engines() as seen:
                    vals[peer] = np.asarray(torch.as_tensor(call()).cpu(), dtype=np.float64)
                times[peer] = _wall_ms(call, rounds, warmup=0)
                times[peer]["distances"] = sorted(set(seen.all("metric_distances")))
            B, C, shape = BM.WORKLOADS[workload]
            row = {"workload": f"{B}x{C}x{'x'.join(map(str, shape))}", "metric": metric,
                   **{f"{p}_ms": t["median_ms"] for p, t in times.items()},
                   "distances": {p: t["distances"] for p, t in times.items() if p.startswith("fastgsl")}}
            if "monai" in vals:
                row["monai_over_fastgsl"] = times["monai"]["median_ms"] / times["fastgsl"]["median_ms"]
                row["max_abs_diff_vs_monai"] = float(np.nanmax(np.abs(vals["fastgsl"] - vals["monai"])))
                ratios.append(row["monai_over_fastgsl"])
            data["rows"].append(row)
    data["min_ratio_vs_monai"] = min(ratios) if ratios else None
    return {"status": "ok", "data": data, "peers": peers}


def train_command(args, folder: Path) -> list:
    epochs, iters = (1, 5) if args.quick else (3, 20)
    return [sys.executable, "-m", "fastgsl.train", "--device", "cuda", "--amp", "bf16", "--losses", "gsl",
            "--epochs", str(epochs), "--iters-per-epoch", str(iters), "--val-every", str(epochs),
            "--num-cases", "8", "--folds", "2", "--fold", "0", "--workers", "0", "--no-progress",
            "--data-dir", str(folder / "data"), "--out", str(folder / "run")]


def step_train(args, budget: float, logs: Path) -> dict:
    peers = {"MONAI": peer_status("monai.networks.nets"), "nibabel": peer_status("nibabel")}
    missing = [f"{p}: {s['reason']}" for p, s in peers.items() if s["status"] != "present"]
    if missing:
        return {"status": "error", "peers": peers, "data": {},
                "reason": "the training script needs " + "; ".join(missing)}
    with tempfile.TemporaryDirectory(prefix="fastgsl_gpu_train_") as tmp:
        cmd = train_command(args, Path(tmp))
        res = run_child(cmd, budget - 2, logs / "train.log")
        data = {"command": " ".join(map(str, cmd[1:])).replace(tmp, "<tmp>"), "rc": res["rc"],
                "seconds": round(res["seconds"], 1)}
        result = Path(tmp) / "run" / "gsl-linear" / "fold0" / "result.json"
        if result.exists():
            r = json.loads(result.read_text())
            hist = r.get("history", [])
            data.update(amp=r.get("meta", {}).get("amp"), epochs=len(hist),
                        loss_first=hist[0].get("loss") if hist else None,
                        loss_last=hist[-1].get("loss") if hist else None,
                        epoch_seconds=[round(h.get("seconds", float("nan")), 2) for h in hist],
                        val=hist[-1].get("val") if hist else None)
    if res["timed_out"]:
        return {"status": "timeout", "data": data, "peers": peers, "reason": "training ran past the step budget"}
    if res["rc"] != 0:
        return {"status": "failed", "data": data, "peers": peers,
                "reason": f"exit {res['rc']}: {res['tail'][-800:]}"}
    return {"status": "ok", "data": data, "peers": peers}


WORKERS = {"tests": step_tests, "losses": step_losses, "edt": step_edt, "metrics": step_metrics,
           "train": step_train}


def worker_main(args) -> int:
    """``--worker STEP``: run one step in this process and write its result to ``--result``."""
    import torch
    t0 = time.perf_counter()
    if not torch.cuda.is_available():
        res = {"status": "error", "reason": "no CUDA device in the worker"}
    else:
        try:
            res = WORKERS[args.worker](args, args.budget, Path(args.logs))
        except Exception as e:
            import traceback
            res = {"status": "error", "reason": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc()[-3000:]}
    res["worker_seconds"] = time.perf_counter() - t0
    Path(args.result).write_text(json.dumps(res, indent=1, default=str))
    return 0


def subprocess_runner(step: str, budget: float, args, logs: Path) -> dict:
    """Run ``step`` in a child ``--worker`` process, killed (with its children) when ``budget`` is spent."""
    result = logs / f".{step}_result.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_suite", "--worker", step, "--result", result, "--logs", logs,
           "--budget", f"{budget:.1f}", "--tests", args.tests] + (["--quick"] if args.quick else [])
    res = run_child(cmd, budget, logs / "steps.log")  # one log for every worker: few files travel back
    if res["timed_out"]:
        out = {"status": "timeout", "reason": f"killed after its budget of {budget:.0f} s"}
        result.unlink(missing_ok=True)
    elif result.exists():
        out = json.loads(result.read_text())
        result.unlink()
    else:
        out = {"status": "error", "reason": f"worker exit {res['rc']} without a result: {res['tail'][-800:]}"}
    return out


# ------------------------------------------------------------------------------------------------ the suite
def run_suite(args, runner=subprocess_runner, clock=time.monotonic, logs: Path | None = None) -> dict:
    """Every step not skipped, in order, each within its budget and the global deadline; never raises for a step."""
    start = clock()
    results = {}
    for step in STEPS:
        if step in args.skip:
            results[step] = {"status": "skipped", "reason": "--skip", "seconds": 0.0, "budget_s": BUDGETS[step]}
            continue
        if args.dry_run:
            results[step] = {"status": "not run", "reason": "--dry-run: nothing measured", "seconds": 0.0,
                             "budget_s": BUDGETS[step]}
            continue
        left = args.deadline - (clock() - start)
        if left < MIN_START_S:
            results[step] = {"status": "not run", "seconds": 0.0, "budget_s": BUDGETS[step],
                             "reason": f"global deadline of {args.deadline:.0f} s reached ({max(left, 0):.0f} s left)"}
            continue
        budget = min(BUDGETS[step], left)
        t0 = clock()
        try:
            res = runner(step, budget, args, logs)
        except Exception as e:  # the runner itself broke: this step is reported, the next one still runs
            res = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
        res = dict(res)
        res.setdefault("status", "error")
        res["seconds"] = clock() - t0
        res["budget_s"] = budget
        results[step] = res
        print(f"[gpu_suite] {step}: {res['status']} in {res['seconds']:.1f} s"
              + (f" ({res.get('reason')})" if res.get("reason") else ""), flush=True)
    return results


def _fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def render_markdown(report: dict) -> str:
    env, steps, tv = report["environment"], report["steps"], report["verdicts"]
    L = [f"# fastgsl one-shot GPU run, {report['started_utc']}", ""]
    if report.get("dry_run"):
        L += ["**Dry run: nothing was measured.** Every step below is a placeholder.", ""]
    if report.get("quick"):
        L += ["**--quick: smaller workloads than the targets are set for; verdicts are indicative only.**", ""]
    L += [f"GPU: **{env.get('gpu')}**", "", "| | |", "| --- | --- |"]
    for k in ("gpu", "gpu_count", "capability", "sm_count", "gpu_memory_GiB", "driver", "cuda_driver_api",
              "torch_cuda", "cuda_runtime_cupy", "torch", "triton", "cupy", "numpy", "python", "cpu_count",
              "commit", "TRITON_INTERPRET"):
        if k in env:
            L.append(f"| {k} | {env[k]} |")
    L += ["", f"Command: `{report['command']}`; deadline {report['deadline_s']:.0f} s; "
              f"total {report['total_seconds']:.1f} s.", "", "## Steps", "",
          "| step | status | seconds | budget (s) | note |", "| --- | --- | ---: | ---: | --- |"]
    for s in STEPS:
        r = steps.get(s, {})
        note = (r.get("reason") or "").replace("\n", " ").replace("|", "/")[:300]
        L.append(f"| {s} | {r.get('status')} | {_fmt(r.get('seconds'))} | {_fmt(r.get('budget_s'))} | {note} |")
    L += ["", "## Targets", "", "| target | measured | target | verdict | note |", "| --- | ---: | ---: | --- | --- |"]
    for v in tv:
        meas = "-" if v["value"] is None else f"{_fmt(v['value'])} {v['unit']}"
        L.append(f"| {v['target']} | {meas} | {v['op']} {_fmt(v['threshold'])} {v['unit']} | **{v['verdict']}** "
                 f"| {(v.get('why') or '').replace('|', '/')} |")
    L += ["", "## Peers", "", "| step | peer | status | version or reason |", "| --- | --- | --- | --- |"]
    for name, p in (env.get("peers") or {}).items():
        L.append(f"| (this process) | {name} | {p['status']} | {p.get('version') or p.get('reason')} |")
    for s in STEPS:
        for name, p in ((steps.get(s) or {}).get("peers") or {}).items():
            L.append(f"| {s} | {name} | {p['status']} | {p.get('version') or p.get('reason')} |")
    L += _details(steps)
    return "\n".join(L) + "\n"


def _details(steps: dict) -> list:
    L = []
    t = steps.get("tests", {})
    if t.get("data"):
        d = t["data"]
        L += ["", "## Tests (Triton interpreter off)", "",
              f"{d['tests']} tests: {d['passed']} passed, {d['failed']} failed, {d['errors']} errors, "
              f"{d['skipped']} skipped (selection: {d['mode']}).", "",
              "| selection | status | rc | seconds | passed | failed | errors | skipped |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in d["runs"]:
            L.append(f"| {r['selection']} | {r['status']} | {_fmt(r.get('rc'))} | {_fmt(r.get('seconds'))} | "
                     f"{_fmt(r.get('passed'))} | {_fmt(r.get('failed'))} | {_fmt(r.get('errors'))} | "
                     f"{_fmt(r.get('skipped'))} |")
        if d["failures"]:
            L += ["", "Failures and errors:", ""] + [f"- `{f}`" for f in d["failures"]]
        if d["skip_reasons"]:
            L += ["", "Skip reasons:", ""] + [f"- {n} x {r}" for r, n in d["skip_reasons"].items()]
    lo = (steps.get("losses") or {}).get("data")
    if lo:
        L += ["", f"## Losses: Dice-CE + GSL forward + backward, fp32 logits {lo['workload']}", "",
              f"Bytes moved (model): {lo['bytes_moved'] / 1e6:.1f} MB ({lo['fwd_B_per_voxel']} + "
              f"{lo['bwd_B_per_voxel']} B/voxel); roofline {lo['roofline_us']:.1f} us at "
              f"{lo['roofline_Bps'] / 1e12:.1f} TB/s; a same-run copy of those bytes took {lo['copy_ms'] * 1e3:.1f} us "
              f"({lo['copy_GBps']:.0f} GB/s).", "",
              "| implementation | ms | GB/s | % roofline | % of copy | peak above inputs (MiB) | vs fastgsl "
              "| engines |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        f_ms = (lo.get("fastgsl") or {}).get("ms")
        for name, r in lo["impls"].items():
            L.append(f"| {name} | {_fmt(r['ms'])} | {_fmt(r.get('GBps'))} | {_fmt(r.get('roofline_pct'))} | "
                     f"{_fmt(r.get('copy_pct'))} | {_fmt(r['peak_extra_MiB'])} | "
                     f"{_fmt(r['ms'] / f_ms) + 'x' if f_ms else '-'} | {', '.join(r['engines']) or '-'} |")
    ed = (steps.get("edt") or {}).get("data")
    if ed and "fastgsl_itk_ms" in ed:
        L += ["", f"## EDT: signed DTMs of {ed['workload']}", "", "| implementation | median ms | min ms |",
              "| --- | ---: | ---: |",
              f"| fastgsl itk ({', '.join(ed['engine'])}) | {_fmt(ed['fastgsl_itk']['median_ms'])} | "
              f"{_fmt(ed['fastgsl_itk']['min_ms'])} |",
              f"| fastgsl edt | {_fmt(ed['fastgsl_edt']['median_ms'])} | {_fmt(ed['fastgsl_edt']['min_ms'])} |"]
        if "cupy_loop" in ed:
            L += [f"| CuPy distance_transform_edt, once per volume (16 calls) | {_fmt(ed['cupy_loop']['median_ms'])} "
                  f"| {_fmt(ed['cupy_loop']['min_ms'])} |", "",
                  f"Largest |fastgsl edt - CuPy| over the 8 maps: {ed['max_abs_diff_vs_cupy']:.3g}."]
    me = (steps.get("metrics") or {}).get("data")
    if me and me.get("rows"):
        L += ["", f"## Metrics on CUDA tensors (spacing {tuple(me['spacing'])}); MONAI: {me['monai_engine']}", "",
              "| workload | metric | fastgsl ms | fastgsl dense ms | MONAI ms | MONAI / fastgsl | max diff | paths |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in me["rows"]:
            L.append(f"| {r['workload']} | {r['metric']} | {_fmt(r.get('fastgsl_ms'))} | "
                     f"{_fmt(r.get('fastgsl_dense_ms'))} | {_fmt(r.get('monai_ms'))} | "
                     f"{_fmt(r.get('monai_over_fastgsl'))} | {_fmt(r.get('max_abs_diff_vs_monai'))} | "
                     f"{'; '.join(f'{k}: {v}' for k, v in r['distances'].items())} |")
        L += [f"- not timed: {n}" for n in me.get("not_timed", [])]
    tr = (steps.get("train") or {}).get("data")
    if tr:
        L += ["", "## Training run", "", f"`{tr.get('command')}`: exit {tr.get('rc')}, {tr.get('seconds')} s; "
              f"amp {tr.get('amp')}, {tr.get('epochs')} epochs ({tr.get('epoch_seconds')} s each), loss "
              f"{_fmt(tr.get('loss_first'))} -> {_fmt(tr.get('loss_last'))}; held-out {tr.get('val')}."]
    for s in STEPS:
        tb = (steps.get(s) or {}).get("traceback")
        if tb:
            L += ["", f"## {s}: traceback", "", "```", tb.rstrip(), "```"]
    return L


def write_report(results: dict, env: dict, args, out: Path, stamp: str, total_seconds: float,
                 command: str) -> tuple[Path, Path]:
    report = {"started_utc": stamp, "command": command, "deadline_s": args.deadline, "quick": args.quick,
              "dry_run": args.dry_run, "total_seconds": total_seconds, "environment": env,
              "budgets_s": BUDGETS, "steps": results, "verdicts": verdicts(results, quick=args.quick)}
    out.mkdir(parents=True, exist_ok=True)
    base = f"gpu_{'dryrun_' if args.dry_run else ''}{stamp}"
    md, js = out / f"{base}.md", out / f"{base}.json"
    js.write_text(json.dumps(report, indent=1, default=str))
    md.write_text(render_markdown(report))
    return md, js


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite",
                                description="One-shot GPU run: CUDA tests, GPU benchmarks, AMP training, report.")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder of the reports")
    p.add_argument("--skip", nargs="+", default=[], choices=STEPS, metavar="STEP",
                   help=f"steps left out (reported as skipped): {', '.join(STEPS)}")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, help="global deadline in seconds")
    p.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run; verdicts indicative)")
    p.add_argument("--dry-run", action="store_true", help="write the reports with every step 'not run'")
    p.add_argument("--tests", choices=["cuda", "all"], default="cuda",
                   help="cuda: the Triton kernel tests and the tests marked gpu; all: the whole suite")
    # internal: one step in a child process
    p.add_argument("--worker", choices=STEPS, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--logs", help=argparse.SUPPRESS)
    p.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if not args.deadline > 0:
        p.error(f"--deadline must be positive, got {args.deadline}")
    return args


def main(argv=None, runner=subprocess_runner) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    import torch
    if not args.dry_run and not torch.cuda.is_available():
        print("benchmarks.gpu_suite: no CUDA device is visible (torch.cuda.is_available() is False); this suite "
              "needs one. Use --dry-run to exercise the report writing without a GPU.", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out)
    logs = out / f"gpu_{'dryrun_' if args.dry_run else ''}{stamp}_logs"
    if not args.dry_run:
        logs.mkdir(parents=True, exist_ok=True)
    env = environment()
    results = run_suite(args, runner=runner, logs=logs)
    command = "python -m benchmarks.gpu_suite " + " ".join(sys.argv[1:] if argv is None else argv)
    md, js = write_report(results, env, args, out, stamp, time.monotonic() - t0, command.strip())
    print(f"[gpu_suite] wrote {md} and {js}")
    bad = [s for s, r in results.items()
           if r["status"] in ("failed", "error", "timeout") or (r["status"] == "not run" and not args.dry_run)]
    if bad:
        print(f"[gpu_suite] steps not finished cleanly: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
