"""The Triton statistics / gradient kernels against the PyTorch host path and a naive fp64 autograd reference.

On a machine without CUDA the kernels run under the Triton interpreter (``TRITON_INTERPRET=1`` is set in
``conftest.py``), on CPU tensors, with ``FASTGSL_BACKEND=triton``.  Where a CUDA device exists the same tests run
the compiled kernels on it.  Shapes are small and odd (never a multiple of a block) so the interpreter stays fast;
a second, tiny launch configuration (``block_n``/``tiles``) exercises many programs, multi-tile loops and the
two-stage reduction on the same data.
"""
import os

import pytest
import torch

from fastgsl import backend, reference
from fastgsl.ops.voxel_stats import (CE, D2, DP, HAUS, I, K, SP, SP2, ST, ST2, SURF, StatSpec, voxel_stats,
                                     backward_host, forward_host)

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
HAS_CUDA = torch.cuda.is_available()
if not INTERPRETER and not HAS_CUDA:
    pytest.skip("the Triton kernels need a CUDA device or TRITON_INTERPRET=1 (set by conftest.py) before "
                "triton is imported", allow_module_level=True)
kv = pytest.importorskip("fastgsl.ops.voxel_stats.triton_passes", reason="triton is needed for the kernel path")

DEV = "cpu" if INTERPRETER else "cuda"
gpu_only = pytest.mark.skipif(INTERPRETER or not HAS_CUDA,
                              reason="needs real CUDA kernels (no GPU here; the interpreter cannot run bf16 or "
                                     ">2^31-element volumes)")
ALL = frozenset(range(K))
SMALL = dict(block_n=32, tiles=3)  # many programs, 3 tiles each, a ragged last tile


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("FASTGSL_BACKEND", "triton")
    monkeypatch.delenv("FASTGSL_ATOMICS", raising=False)


def make_case(B, C, sp, act, target_kind, with_dp, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (B, C, *sp)
    z = torch.randn(shape, generator=g, dtype=torch.float64) * 2.0
    if act == "none":
        z = torch.sigmoid(z)
    offset = 1 if (act == "sigmoid" and C == 1) else 0
    if target_kind == "labels":
        t = torch.randint(0, C + offset, (B, *sp), generator=g)
    else:  # soft / multi-label float target
        t = torch.rand(shape, generator=g, dtype=torch.float64).to(torch.float32)
    d = (torch.randn(shape, generator=g, dtype=torch.float64) * 4.0).to(torch.float32)
    dp = (torch.randn(shape, generator=g, dtype=torch.float64) * 4.0).to(torch.float32) if with_dp else None
    needs = ALL - {CE} if act == "none" else ALL
    spec = StatSpec(act, needs, offset)
    to = lambda x: None if x is None else x.to(DEV)  # noqa: E731
    return z.to(dtype).to(DEV), to(t), to(d), to(dp), spec


naive_stats = reference.voxel_stats
naive_grad = reference.voxel_stats_grad


def assert_stats_close(got, ref, rtol=2e-5):
    """Per-stat tolerance relative to the stat's magnitude over the batch (sums of thousands of fp32 terms)."""
    ref = ref.to(got.dtype)
    scale = ref.abs().amax(dim=(0, 1), keepdim=True).clamp_min(1.0)
    err = ((got - ref).abs() / scale).max().item()
    assert err <= rtol, f"max scaled error {err:.3g} > {rtol}"


def assert_grad_close(got, ref, rtol=2e-5):
    ref = ref.to(torch.float64)
    err = ((got.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
    assert err <= rtol, f"max gradient error {err:.3g} (relative to max |grad|) > {rtol}"


CASES = [  # B, C, spatial, activation, target, dtm_pred
    (3, 3, (9, 11, 13), "softmax", "labels", True),
    (1, 5, (17, 19), "softmax", "labels", False),
    (3, 2, (13, 15), "softmax", "float", True),
    (1, 1, (7, 9, 11), "sigmoid", "labels", True),
    (3, 1, (19, 17), "sigmoid", "float", False),
    (1, 3, (5, 7, 9), "sigmoid", "float", True),
    (3, 2, (7, 5, 9), "none", "float", False),
    (1, 5, (9, 7, 5), "none", "labels", True),
    (1, 11, (9, 13), "softmax", "labels", True),  # C padded to 16
    (3, 16, (7, 9), "softmax", "float", False),
]


def _id(c):
    B, C, sp, act, tk, dp = c
    return f"B{B}-C{C}-{len(sp)}d-{act}-{tk}-{'dp' if dp else 'nodp'}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_kernel_matches_host_and_naive(case, triton_backend):
    B, C, sp, act, tk, with_dp = case
    z, t, d, dp, spec = make_case(B, C, sp, act, tk, with_dp)
    w = torch.randn(B, C, K, generator=torch.Generator().manual_seed(1)).to(DEV)  # random grad_output
    ref = naive_stats(z, t, d, dp, spec)
    ref_g = naive_grad(z, t, d, dp, spec, w)

    # through the public op (autograd.Function -> torch.ops.fastgsl.*)
    zl = z.clone().requires_grad_()
    s = voxel_stats(zl, t, d, dp, spec=spec)
    assert s.dtype == torch.float32 and s.shape == (B, C, K)
    (s * w).sum().backward()
    assert_stats_close(s.detach(), ref)
    assert_grad_close(zl.grad, ref_g)

    # the host functions directly, with a many-program launch, against the PyTorch host path
    host = forward_host(z, t, d, dp, spec)
    host_g = backward_host(w, z, t, d, dp, spec)
    for cfg in ({}, SMALL):
        got = kv.voxel_stats_forward(z, t, d, dp, spec, **cfg)
        assert_stats_close(got, host)
        got_g = kv.voxel_stats_backward(w, z, t, d, dp, spec, **cfg)
        assert got_g.dtype == z.dtype and got_g.shape == z.shape
        assert_grad_close(got_g, host_g)


def test_only_requested_stats(triton_backend):
    """Unrequested stats come out as exactly 0 and contribute nothing to the gradient (constexpr flags)."""
    z, t, d, dp, _ = make_case(3, 3, (9, 11, 7), "softmax", "labels", True)
    w = torch.randn(3, 3, K).to(DEV)
    for needs in ({I, SP, ST}, {CE}, {SURF, D2}, {DP}, {HAUS}, {SP2, ST2, I}):
        spec = StatSpec("softmax", frozenset(needs))
        got = kv.voxel_stats_forward(z, t, d, dp, spec, block_n=128, tiles=2)
        other = [k for k in range(K) if k not in needs]
        assert torch.all(got[..., other] == 0)
        assert_stats_close(got, naive_stats(z, t, d, dp, spec))
        assert_grad_close(kv.voxel_stats_backward(w, z, t, d, dp, spec),
                          naive_grad(z, t, d, dp, spec, w * torch.tensor([k in needs for k in range(K)]).to(DEV)))


def test_fp16_logits(triton_backend):
    z, t, d, dp, spec = make_case(3, 3, (9, 11, 7), "softmax", "labels", True, dtype=torch.float16)
    w = torch.randn(3, 3, K).to(DEV)
    zl = z.clone().requires_grad_()
    s = voxel_stats(zl, t, d, dp, spec=spec)
    (s * w).sum().backward()
    assert s.dtype == torch.float32 and zl.grad.dtype == torch.float16
    # the reference sees exactly the same fp16 values, upcast: only accumulation order and the final fp16
    # rounding of the gradient differ
    assert_stats_close(s.detach(), naive_stats(z, t, d, dp, spec))
    assert_grad_close(zl.grad, naive_grad(z, t, d, dp, spec, w), rtol=2e-3)
    host_g = backward_host(w, z, t, d, dp, spec)
    assert_grad_close(zl.grad, host_g, rtol=2e-3)


def test_fp16_dtm_and_int_label_dtypes(triton_backend):
    """DTMs in fp16 and labels as uint8 / int32 / bool are read directly."""
    z, t, d, dp, spec = make_case(1, 2, (11, 13), "softmax", "labels", True)
    ref = naive_stats(z, t, d.half(), dp.half(), spec)
    for lab in (t.to(torch.uint8), t.to(torch.int32), t.bool()):
        assert_stats_close(kv.voxel_stats_forward(z, lab, d.half(), dp.half(), spec), ref)


@gpu_only
def test_bf16_logits_gpu(triton_backend):
    z, t, d, dp, spec = make_case(2, 4, (33, 31, 29), "softmax", "labels", True, dtype=torch.bfloat16)
    w = torch.randn(2, 4, K, device=DEV)
    zl = z.clone().requires_grad_()
    s = voxel_stats(zl, t, d, dp, spec=spec)
    (s * w).sum().backward()
    assert zl.grad.dtype == torch.bfloat16
    assert_stats_close(s.detach(), naive_stats(z, t, d, dp, spec))
    assert_grad_close(zl.grad, naive_grad(z, t, d, dp, spec, w), rtol=2e-2)


def test_autocast_reads_half_logits_without_copy(triton_backend, monkeypatch):
    """Under autocast the fp16 logits reach the kernel as they are (same storage), and the grad is fp16."""
    z, t, d, dp, spec = make_case(1, 3, (9, 7, 5), "softmax", "labels", False, dtype=torch.float16)
    seen = []
    real = kv.voxel_stats_forward

    def spy(logits, *a, **k):
        seen.append((logits.dtype, logits.data_ptr()))
        return real(logits, *a, **k)

    monkeypatch.setattr(kv, "voxel_stats_forward", spy)
    zl = z.clone().requires_grad_()
    with torch.autocast(DEV, dtype=torch.float16):
        s = voxel_stats(zl, t, d, None, spec=spec)
    s.sum().backward()
    assert seen == [(torch.float16, zl.data_ptr())]
    assert zl.grad.dtype == torch.float16


def test_deterministic_and_atomics(triton_backend, monkeypatch):
    z, t, d, dp, spec = make_case(3, 5, (9, 11, 7), "softmax", "labels", True)
    w = torch.randn(3, 5, K).to(DEV)

    def run():
        zl = z.clone().requires_grad_()
        s = voxel_stats(zl, t, d, dp, spec=spec)
        (s * w).sum().backward()
        return s.detach(), zl.grad, kv.voxel_stats_forward(z, t, d, dp, spec, **SMALL)

    a, b = run(), run()
    for x, y in zip(a, b):
        assert torch.equal(x, y)  # bit-identical (NaN-free inputs)
    ref = naive_stats(z, t, d, dp, spec)
    at = kv.voxel_stats_forward(z, t, d, dp, spec, use_atomics=True, **SMALL)
    assert_stats_close(at, ref)
    # the opt-in flag reaches the op, and deterministic mode overrides it
    monkeypatch.setenv("FASTGSL_ATOMICS", "1")
    assert backend.atomics_enabled()
    assert_stats_close(voxel_stats(z, t, d, dp, spec=spec), ref)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert not backend.atomics_enabled()
    finally:
        torch.use_deterministic_algorithms(prev)


def test_nan_logits_propagate(triton_backend):
    z, t, d, dp, spec = make_case(3, 3, (9, 11, 7), "softmax", "labels", True)
    z[1, 2, 4, 5, 3] = float("nan")
    zl = z.clone().requires_grad_()
    s = voxel_stats(zl, t, d, dp, spec=spec)
    (s * torch.ones_like(s)).sum().backward()
    p_stats = [I, SP, SP2, CE, SURF, DP, HAUS]
    assert torch.isnan(s[1][:, p_stats]).all()  # softmax couples the classes: every class of item 1
    assert torch.isfinite(s[0]).all() and torch.isfinite(s[2]).all()
    assert torch.isfinite(s[1][:, [ST, ST2, D2]]).all()
    assert torch.isnan(zl.grad[1, :, 4, 5, 3]).all()
    zg = zl.grad.clone()
    zg[1, :, 4, 5, 3] = 0
    assert torch.isfinite(zg[0]).all() and torch.isfinite(zg[2]).all()
    # sigmoid: only the class with the NaN logit
    zs, ts, ds, _, sspec = make_case(1, 2, (7, 9), "sigmoid", "float", False)
    zs[0, 1, 3, 3] = float("nan")
    out = kv.voxel_stats_forward(zs, ts, ds, None, sspec)
    assert torch.isnan(out[0, 1, [I, SP, CE, SURF]]).all() and torch.isfinite(out[0, 0]).all()


def test_non_contiguous_inputs(triton_backend):
    z, t, d, dp, spec = make_case(3, 3, (9, 11, 7), "softmax", "float", True)
    w = torch.randn(3, 3, K).to(DEV)
    zt = z.transpose(2, 4).contiguous().transpose(2, 4)  # same values, permuted strides
    big = torch.randn(3, 3, 9, 22, 7, device=DEV)
    big[:, :, :, ::2] = d
    dv = big[:, :, :, ::2]  # strided view
    tt = t.to(memory_format=torch.channels_last_3d)
    assert not zt.is_contiguous() and not dv.is_contiguous() and not tt.is_contiguous()
    zl = zt.clone().requires_grad_()  # clone keeps the strides
    s = voxel_stats(zl, tt, dv, dp, spec=spec)
    (s * w).sum().backward()
    assert_stats_close(s.detach(), naive_stats(z, t, d, dp, spec))
    assert zl.grad.shape == z.shape
    assert_grad_close(zl.grad, naive_grad(z, t, d, dp, spec, w))


def test_float64_runs_host_path_in_float64(triton_backend):
    z, t, d, dp, spec = make_case(1, 3, (5, 7, 3), "softmax", "labels", True, dtype=torch.float64)
    out = kv.voxel_stats_forward(z, t, d, dp, spec)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, naive_stats(z, t, d, dp, spec), rtol=1e-12, atol=1e-10)
    zl = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: voxel_stats(x, t, d, dp, spec=spec), (zl,), eps=1e-6, atol=1e-5)


def test_bad_inputs(triton_backend):
    z, t, d, dp, spec = make_case(1, 3, (5, 7), "softmax", "labels", True)
    with pytest.raises(ValueError, match="dtm"):
        voxel_stats(z, t, None, spec=spec)
    with pytest.raises(ValueError, match="dtm must have"):
        voxel_stats(z, t, d[:, :2], spec=spec)
    with pytest.raises(ValueError, match="integer labels"):
        voxel_stats(z, t[:, :4], d, spec=spec)
    with pytest.raises(ValueError, match="float target"):
        voxel_stats(z, torch.rand(1, 2, 5, 7, device=DEV), d, spec=spec)
    with pytest.raises(TypeError, match="floating-point"):
        voxel_stats(z.long(), t, d, spec=spec)


def test_triton_on_cpu_needs_interpreter(monkeypatch):
    monkeypatch.setenv("FASTGSL_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        backend.resolve(torch.device("cpu"))
    monkeypatch.setenv("FASTGSL_BACKEND", "bogus")
    with pytest.raises(ValueError, match="FASTGSL_BACKEND"):
        backend.requested()


def test_torch_compile_fullgraph(triton_backend):
    """Model-ish code around the op compiles as one graph (no graph break) and matches eager."""
    z, t, d, dp, spec = make_case(3, 3, (7, 9, 5), "softmax", "labels", True)
    w = torch.randn(3, 3, K).to(DEV)

    def f(z, t, d, dp):
        s = voxel_stats(z * 1.5, t, d, dp, spec=spec)
        return (s * w).sum() + z.square().mean()  # the loss is not the last op

    zl = z.clone().requires_grad_()
    eager = f(zl, t, d, dp)
    (ge,) = torch.autograd.grad(eager, zl)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(f)(zl, t, d, dp)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    # aot_eager: dynamo + AOTAutograd (fake tensors, functionalisation) without needing a C++/CUDA toolchain
    cf = torch.compile(f, fullgraph=True, backend="aot_eager" if INTERPRETER else "inductor")
    comp = cf(zl, t, d, dp)
    (gc,) = torch.autograd.grad(comp, zl)
    torch.testing.assert_close(comp, eager, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-6)


_TRACE_SCRIPT = r"""
import os, sys
os.environ.pop("TRITON_INTERPRET", None)
os.environ["FASTGSL_BACKEND"] = "triton"
import torch
from torch._dynamo.backends.common import aot_autograd
from functorch.compile import default_partition
import fastgsl.backend as be
import fastgsl.ops.voxel_stats.triton_passes as kv
from fastgsl.ops.voxel_stats import K, StatSpec, voxel_stats
assert not kv.INTERPRETER
be.resolve = lambda device: "triton"  # CPU tensors without the interpreter: trace only, never launch
joint = []
class Captured(Exception):
    pass
def partition(gm, inputs, **kw):
    joint.append(gm.code)
    return default_partition(gm, inputs, **kw)
def fw(gm, example_inputs):
    raise Captured()
spec = StatSpec("softmax", frozenset(range(K)))
f = lambda z, t, d: voxel_stats(z * 2, t, d, spec=spec).sum()
z = torch.randn(2, 3, 5, 6, 7, requires_grad=True)
try:
    torch.compile(f, backend=aot_autograd(fw_compiler=fw, partition_fn=partition), fullgraph=True)(
        z, torch.randint(0, 3, (2, 5, 6, 7)), torch.randn(2, 3, 5, 6, 7))
except Exception as e:
    if "Captured" not in repr(e):
        raise
code = joint[0]
print("KERNELS", code.count("triton_kernel_wrapper_functional("), "part_ptr" in code, "gs_ptr" in code)
"""


@pytest.mark.skipif(HAS_CUDA, reason="on a GPU test_torch_compile_fullgraph runs the triton_op path for real")
def test_triton_op_registration_traces_kernels():
    """Without the interpreter the ops are ``triton_op``s: a fullgraph compile sees the three kernels themselves
    (statistics, partial reduction, gradient) in the joint graph.  Traced on CPU, never launched."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _TRACE_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "KERNELS 3 True True" in res.stdout, res.stdout[-2000:]


_AOT_SCRIPT = r"""
import os, warnings
warnings.filterwarnings("ignore")
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import fastgsl.ops.voxel_stats.triton_passes as kv
sm90 = GPUTarget("cuda", 90, 32)
common = {"C": "i32", "N": "i64", "label_offset": "i32", "tiles": "i32"}
def fwd(z, t, **c):
    sig = {"z_ptr": z, "t_ptr": t, "d_ptr": "*fp32", "dp_ptr": "*fp16", "out_ptr": "*fp32", **common, "n_prog": "i32"}
    sig.update({k: "constexpr" for k in ("NEED", "ACT", "LABELS", "HAS_DP", "ATOMIC", "C_PAD", "BLOCK_N")})
    return kv._voxel_stats_fwd_kernel, sig, c
def bwd(z, t, **c):
    sig = {"gs_ptr": "*fp32", "z_ptr": z, "t_ptr": t, "d_ptr": "*fp32", "dp_ptr": "*fp32", "g_ptr": z, **common}
    sig.update({k: "constexpr" for k in ("NEED", "ACT", "LABELS", "HAS_DP", "C_PAD", "BLOCK_N")})
    return kv._voxel_stats_bwd_kernel, sig, c
variants = [
    fwd("*fp16", "*i64", NEED=1023, ACT=0, LABELS=True, HAS_DP=True, ATOMIC=False, C_PAD=4, BLOCK_N=256),
    fwd("*bf16", "*fp32", NEED=1023, ACT=1, LABELS=False, HAS_DP=False, ATOMIC=True, C_PAD=1, BLOCK_N=1024),
    fwd("*fp32", "*u8", NEED=991, ACT=2, LABELS=True, HAS_DP=False, ATOMIC=False, C_PAD=16, BLOCK_N=64),
    bwd("*bf16", "*u8", NEED=871, ACT=0, LABELS=True, HAS_DP=True, C_PAD=4, BLOCK_N=256),
    bwd("*fp32", "*fp32", NEED=871, ACT=1, LABELS=False, HAS_DP=False, C_PAD=2, BLOCK_N=512),
    (kv._reduce_partials_kernel, {"part_ptr": "*fp32", "out_ptr": "*fp32", "n_prog": "i32", "M": "i32",
                                  "BLOCK_R": "constexpr", "BLOCK_M": "constexpr"}, {"BLOCK_R": 16, "BLOCK_M": 64}),
]
for fn, sig, consts in variants:
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=sm90, options={"num_warps": 4})
    assert "cubin" in k.asm, list(k.asm)
print("COMPILED", len(variants))
"""


@pytest.mark.skipif(HAS_CUDA, reason="on a GPU every test above compiles and runs the real kernels")
def test_kernels_compile_for_sm90():
    """The interpreter runs the kernels as numpy, so it cannot catch what only the compiler rejects: compile the
    kernels ahead of time for sm_90 (H100/H200) down to a cubin, with fp16/bf16/fp32 logits, int64/uint8 labels
    and float targets, every activation, atomics on and off.  Needs no GPU; skips if Triton's NVIDIA backend
    cannot compile here."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _AOT_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if res.returncode != 0 and ("ptxas" in res.stderr and "not found" in res.stderr.lower()):
        pytest.skip("Triton's NVIDIA backend (ptxas) is not available to compile ahead of time")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "COMPILED 6" in res.stdout


@gpu_only
def test_int64_offsets_gpu(triton_backend):
    """A volume of more than 2^31 elements (B=1, C=2, 2^30 + 77 voxels, fp16 logits): the last voxels count."""
    n = (1 << 30) + 77
    z = torch.zeros(1, 2, n, device=DEV, dtype=torch.float16)
    t = torch.zeros(1, n, device=DEV, dtype=torch.uint8)
    t[0, -77:] = 1
    z[0, 1, -5:] = 20.0
    spec = StatSpec("softmax", frozenset({I, ST, SP}))
    s = kv.voxel_stats_forward(z, t, None, None, spec)
    assert s[0, 1, ST].item() == 77
    assert abs(s[0, 1, I].item() - (72 * 0.5 + 5 * torch.sigmoid(torch.tensor(20.0)).item())) < 1e-2
    g = kv.voxel_stats_backward(torch.ones(1, 2, K, device=DEV), z, t, None, None, spec)
    # dS/dz with all grad_stats 1 at p = (1/2, 1/2): +-1/4, the sign set by the label (exact in fp16)
    assert g[0, :, -6].tolist() == [-0.25, 0.25] and g[0, :, 0].tolist() == [0.25, -0.25]


# ---------------------------------------------------------------------------------------------------------
# Loss level: FASTGSL_BACKEND=triton against torch.
# ---------------------------------------------------------------------------------------------------------

losses = pytest.importorskip("fastgsl.losses", reason="fastgsl.losses is not importable")


def _loss_cases():
    L = losses
    return {
        "dicece": lambda: L.DiceCELoss(),
        "gsl": lambda: L.GeneralizedSurfaceLoss(),
        "boundary": lambda: L.BoundaryLoss(),
        "hausdorff": lambda: L.HausdorffLoss(),
        "gdl": lambda: L.GeneralizedDiceLoss(),
        "dicece+gsl": lambda: L.CompositeLoss(L.DiceCELoss(), L.GeneralizedSurfaceLoss(), 0.3),
        "dicece+bl": lambda: L.CompositeLoss(L.DiceCELoss(), L.BoundaryLoss(), 0.7),
        "sigmoid dicece+gsl": lambda: L.CompositeLoss(L.DiceCELoss(activation="sigmoid"),
                                                      L.GeneralizedSurfaceLoss(activation="sigmoid"), 0.5),
    }


@pytest.mark.parametrize("name", list(_loss_cases()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_losses_triton_vs_torch(name, dtype, monkeypatch):
    monkeypatch.delenv("FASTGSL_ATOMICS", raising=False)
    sig = name.startswith("sigmoid")
    B, C, sp = (3, 3, (9, 11, 7)) if dtype == torch.float32 else (1, 2, (13, 11))
    g = torch.Generator().manual_seed(3)
    z = (torch.randn(B, C, *sp, generator=g) * 2).to(dtype).to(DEV)
    if sig:
        t = (torch.rand(B, C, *sp, generator=g) > 0.6).float().to(DEV)
    else:
        t = torch.randint(0, C, (B, *sp), generator=g).to(DEV)
    d = (torch.randn(B, C, *sp, generator=g) * 3).to(DEV)
    loss = _loss_cases()[name]()
    out = {}
    calls = []
    real_f, real_b = kv.voxel_stats_forward, kv.voxel_stats_backward
    monkeypatch.setattr(kv, "voxel_stats_forward", lambda *a, **k: calls.append("f") or real_f(*a, **k))
    monkeypatch.setattr(kv, "voxel_stats_backward", lambda *a, **k: calls.append("b") or real_b(*a, **k))
    for be in ("torch", "triton"):
        monkeypatch.setenv("FASTGSL_BACKEND", be)
        zl = z.clone().requires_grad_()
        val = loss(zl, t, d)
        (val * 2.5 + zl.float().sum() * 1e-3).backward()  # not the last op
        out[be] = (val.detach().double(), zl.grad.double())
    assert calls == ["f", "b"]  # a composite is still one statistics pass and one gradient pass
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(out["triton"][0], out["torch"][0], rtol=tol, atol=tol)
    gt, gh = out["triton"][1], out["torch"][1]
    assert ((gt - gh).abs().max() / gh.abs().max()).item() <= tol
