"""The C++ host passes (kernels/voxel_stats_host.cpp) against the chunked PyTorch passes and a naive fp64 autograd
reference; fp16 / bf16 logits, label dtypes, determinism across thread counts and ISAs, NaN propagation, the
dispatch (the C++ library really is the CPU engine) and the generic loader of fastgsl._native."""
import pytest
import torch

from fastgsl import _native, observe, reference
from fastgsl.kernels import manifest
from fastgsl.ops.voxel_stats import host as vs
from fastgsl.ops.voxel_stats.layout import (COMPILED_NEEDS, CE, D2, DP, I, K, P_STATS, SP, SP2, ST, ST2, STAT_NAMES,
                                            SURF)
from fastgsl.ops.voxel_stats.spec import StatSpec

ALL = frozenset(range(K))
LIB, WHERE = vs.host_library.load()
pytestmark = pytest.mark.skipif(LIB is None, reason=f"the host statistics library is unavailable: {WHERE}")


@pytest.fixture(autouse=True)
def _native_on(monkeypatch):
    monkeypatch.delenv("FASTGSL_NATIVE_STATS", raising=False)


def make_case(B, C, sp, act, target_kind, with_dp, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (B, C, *sp)
    z = torch.randn(shape, generator=g) * 2.0
    if act == "none":
        z = torch.sigmoid(z)
    offset = 1 if (act == "sigmoid" and C == 1) else 0
    if target_kind == "labels":
        t = torch.randint(0, C + offset, (B, *sp), generator=g)
    else:
        t = torch.rand(shape, generator=g)
    d = torch.randn(shape, generator=g) * 4.0
    dp = torch.randn(shape, generator=g) * 4.0 if with_dp else None
    spec = StatSpec(act, ALL - {CE} if act == "none" else ALL, offset)
    return z, t, d, dp, spec


naive_stats = reference.voxel_stats
naive_grad = reference.voxel_stats_grad


def stats_err(got, ref):
    """Max error relative to each stat's magnitude over the batch."""
    ref = ref.double()
    scale = ref.abs().amax(dim=(0, 1), keepdim=True).clamp_min(1.0)
    return ((got.double() - ref).abs() / scale).max().item()


def grad_err(got, ref):
    ref = ref.double()
    return ((got.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def native(z, t, d, dp, spec, w=None):
    """Both host passes, asserting that the C++ library (not the PyTorch fallback) computed them."""
    with observe.engines() as seen:
        s = vs.forward_host(z, t, d, dp, spec)
        g = None if w is None else vs.backward_host(w, z, t, d, dp, spec)
    assert seen.all("voxel_stats") == ["native"] * (1 if w is None else 2)
    return s if w is None else (s, g)


CASES = [  # B, C, spatial, activation, target, dtm_pred
    (3, 3, (9, 11, 13), "softmax", "labels", True),
    (1, 5, (17, 19, 23), "softmax", "labels", False),  # 7429 voxels: two reduction blocks, ragged
    (3, 2, (13, 15), "softmax", "float", True),
    (1, 16, (31, 37), "softmax", "labels", True),
    (3, 16, (7, 9, 5), "softmax", "float", False),
    (1, 1, (7, 9, 11), "sigmoid", "labels", True),
    (3, 1, (67, 71), "sigmoid", "float", False),  # 4757 voxels
    (1, 3, (5, 7, 9), "sigmoid", "float", True),
    (3, 2, (7, 5, 9), "none", "float", False),
    (1, 5, (9, 7, 5), "none", "labels", True),
    (3, 3, (1, 1, 3), "softmax", "labels", False),  # fewer voxels than a vector
    (2, 4, (8, 12, 10), "softmax", "labels", True),  # 960 voxels: every row aligned, the gradient streamed
]


def _id(c):
    B, C, sp, act, tk, dp = c
    return f"B{B}-C{C}-{len(sp)}d-{act}-{tk}-{'dp' if dp else 'nodp'}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_native_matches_chunked_and_naive(case):
    B, C, sp, act, tk, with_dp = case
    z, t, d, dp, spec = make_case(B, C, sp, act, tk, with_dp)
    w = torch.randn(B, C, K, generator=torch.Generator().manual_seed(1))
    s, g = native(z, t, d, dp, spec, w)
    assert s.dtype == torch.float32 and s.shape == (B, C, K)
    assert g.dtype == torch.float32 and g.shape == z.shape
    ref, ref_g = naive_stats(z, t, d, dp, spec), naive_grad(z, t, d, dp, spec, w)
    assert stats_err(s, ref) <= 2e-6
    assert grad_err(g, ref_g) <= 2e-5
    # the chunked PyTorch passes agree with the same reference (and so with the C++ ones)
    assert stats_err(vs._forward_chunked(z, t, d, dp, spec), ref) <= 2e-5
    assert grad_err(vs._backward_chunked(w, z, t, d, dp, spec), ref_g) <= 2e-5
    # stats outside `needs` are exactly 0
    sub = StatSpec(act, frozenset({SP, ST, D2}), spec.label_offset)
    s_sub = native(z, t, d, dp, sub)
    keep = torch.tensor([k in sub.needs for k in range(K)])
    assert (s_sub[..., ~keep] == 0).all()
    assert stats_err(s_sub[..., keep], ref[..., keep]) <= 2e-6


def test_subsets_of_needs_gradient():
    """Each stat alone through the gradient pass (a wrong coefficient slot cannot hide behind the others)."""
    z, t, d, dp, _ = make_case(3, 4, (9, 7, 11), "softmax", "labels", True, seed=3)
    w = torch.randn(3, 4, K, generator=torch.Generator().manual_seed(2))
    for k in sorted(P_STATS):
        spec = StatSpec("softmax", frozenset({k}))
        s, g = native(z, t, d, dp, spec, w)
        assert grad_err(g, naive_grad(z, t, d, dp, spec, w)) <= 2e-5, STAT_NAMES[k]


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_half_logits(dtype, tol):
    z, t, d, dp, spec = make_case(3, 3, (11, 13, 7), "softmax", "labels", True, seed=4)
    z = z.to(dtype)
    w = torch.randn(3, 3, K, generator=torch.Generator().manual_seed(5))
    s, g = native(z, t, d, dp, spec, w)
    assert s.dtype == torch.float32 and g.dtype == dtype
    # the reference sees the same (rounded) logits
    assert stats_err(s, naive_stats(z, t, d, dp, spec)) <= 2e-6
    ref_g = naive_grad(z, t, d, dp, spec, w)
    gc = vs._backward_chunked(w, z, t, d, dp, spec)
    assert gc.dtype == dtype
    scale = ref_g.abs().max()
    # both round a float32 gradient once to `dtype`: at most one unit in the last place apart
    assert ((g.double() - gc.double()).abs() <= tol * gc.double().abs() + 1e-6 * scale).all()
    assert ((g.double() - ref_g).abs() <= tol * ref_g.abs() + 1e-5 * scale).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_conversions_round_like_torch(dtype, seen):
    """activation 'none' with only SP2 and dL/dSP2 = 1.5 gives dL/dz = 3 z, exact in fp32: the C++ conversion to
    fp16 / bf16 must then round exactly as torch does, overflow, subnormals and NaN included.  (No -0: dL/dP
    starts from +0, as in the PyTorch passes, so -0 comes back as +0.)"""
    info = torch.finfo(dtype)
    vals = torch.tensor([0.0, -1e-3, 1.0, -1.0, 1 / 3, info.max, info.max / 2, info.max / 3.01, info.tiny,
                         info.tiny / 3, info.tiny * 0.7, info.smallest_normal / 1024, 7.5e-8, 5e4, 21845.0,
                         float("inf"), float("-inf"), float("nan")], dtype=torch.float64)
    z = torch.cat([vals, torch.randn(101, dtype=torch.float64) * 10.0 ** torch.randint(-6, 5, (101,))]).to(dtype)
    z = z.reshape(1, 1, -1)
    spec = StatSpec("none", frozenset({SP2}))
    w = torch.zeros(1, 1, K)
    w[..., SP2] = 1.5
    g = vs.backward_host(w, z, torch.rand(z.shape), None, None, spec)
    assert seen.all("voxel_stats") == ["native"]
    want = (3.0 * z.float()).to(dtype)
    ok = ~want.isnan() & (z != 0)
    assert torch.equal(g.view(torch.int16)[ok], want.view(torch.int16)[ok])
    assert (g[z == 0] == 0).all()
    assert g.isnan().equal(want.isnan())
    # and the load side: SP of activation 'none' is the exact sum of the upcast logits
    part = z[..., 18:29]
    s = vs.forward_host(part, torch.rand(part.shape), None, None, StatSpec("none", frozenset({SP})))
    assert s[0, 0, SP].item() == pytest.approx(part.double().sum().item(), rel=1e-6)


@pytest.mark.parametrize("ldtype", [torch.int32, torch.uint8, torch.int16, torch.int8])
def test_label_dtypes_and_offsets(ldtype):
    z, t, d, dp, spec = make_case(3, 5, (9, 13, 5), "softmax", "labels", True, seed=6)
    w = torch.randn(3, 5, K)
    s, g = native(z, t, d, dp, spec, w)
    s2, g2 = native(z, t.to(ldtype), d, dp, spec, w)
    assert torch.equal(s, s2) and torch.equal(g, g2)
    # labels outside [0, C) (an ignore value) match no class, as in the PyTorch passes
    t_ign = t.clone()
    t_ign[:, :2] = 255 if ldtype != torch.int8 else -1
    s3, g3 = native(z, t_ign.to(ldtype), d, dp, spec, w)
    assert stats_err(s3, vs._forward_chunked(z, t_ign, d, dp, spec)) <= 2e-6
    assert grad_err(g3, naive_grad(z, t_ign, d, dp, spec, w)) <= 2e-5


def test_bool_labels_sigmoid_one_channel():
    z, t, d, dp, spec = make_case(3, 1, (13, 11, 9), "sigmoid", "labels", False, seed=7)
    w = torch.randn(3, 1, K)
    s, g = native(z, t, d, dp, spec, w)
    s2, g2 = native(z, t.bool(), d, dp, spec, w)
    assert torch.equal(s, s2) and torch.equal(g, g2)


def test_other_float_inputs_and_non_contiguous():
    z, t, d, dp, spec = make_case(3, 3, (9, 11, 7), "softmax", "float", True, seed=8)
    w = torch.randn(3, 3, K)
    s, g = native(z, t, d, dp, spec, w)
    # float64 target / DTMs are read as float32, as the PyTorch passes compute them for fp32 logits
    s2, g2 = native(z, t.double(), d.double(), dp.half().float().double(), spec, w)
    s3, g3 = native(z, t, d, dp.half().float(), spec, w)
    assert torch.equal(s2, s3) and torch.equal(g2, g3)
    # non-contiguous views give the contiguous result
    zt = z.transpose(2, 4).contiguous().transpose(2, 4)
    dt = d.transpose(2, 3).contiguous().transpose(2, 3)
    s4, g4 = native(zt, t, dt, dp, spec, w)
    assert torch.equal(s, s4) and torch.equal(g, g4)
    # int labels with a non-contiguous layout
    lab = torch.randint(0, 3, (3, 7, 11, 9)).transpose(1, 3)
    s5, g5 = native(z, lab, d, dp, spec, w)
    s6, g6 = native(z, lab.contiguous(), d, dp, spec, w)
    assert torch.equal(s5, s6) and torch.equal(g5, g6)


def test_bit_identical_across_threads_and_runs():
    z, t, d, dp, spec = make_case(3, 4, (23, 29, 17), "softmax", "labels", True, seed=9)  # 11339 voxels
    w = torch.randn(3, 4, K)
    old = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3, 1):
            torch.set_num_threads(n)
            results.append(native(z, t, d, dp, spec, w))
    finally:
        torch.set_num_threads(old)
    for s, g in results[1:]:
        assert torch.equal(s, results[0][0]) and torch.equal(g, results[0][1])


def _has_isa(isa: int) -> bool:
    return LIB.fastgsl_stats_forward(0, 0, 0, 0, None, None, torch.empty(1).data_ptr(), 0, 1, 0, 0, 0, 0, 1, isa,
                                     None) == 0


@pytest.mark.parametrize("isa", [2, 3], ids=["avx2", "avx512"])
@pytest.mark.parametrize("act,target_kind,sp", [("softmax", "labels", (23, 29, 17)), ("sigmoid", "float", (9, 7, 5)),
                                                ("softmax", "labels", (5, 3))])
def test_bit_identical_across_isas(isa, act, target_kind, sp):
    """The AVX-512 (16 lanes), AVX2 and baseline (8 lanes, two accumulator banks) builds add in the same order and
    round every operation alike (no FMA), so any of them gives the same bits.  Voxel counts that are not a multiple
    of 16 or of 8 leave partial groups (the padding lanes must add nothing)."""
    if not _has_isa(isa):
        pytest.skip(f"this CPU / build has no {'AVX2' if isa == 2 else 'AVX-512'} variant")
    z, t, d, dp, spec = make_case(3, 3, sp, act, target_kind, True, seed=10)
    w = torch.randn(3, 3, K)
    outs = [(vs._forward_native(LIB, z, t, d, dp, spec, i), vs._backward_native(LIB, w, z, t, d, dp, spec, i))
            for i in (1, isa)]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("isa", [1, 2, 3], ids=["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("tdtype", [torch.int64, torch.int32, torch.uint8])
def test_every_isa_flags_a_label_of_no_channel(isa, tdtype):
    """The forward pass's label test, in each build: one label matching no channel, in a full group or in the
    partial last one, sets the flag (and the rule's error is raised); valid labels do not, and leave the sums as a
    pass without the test computes them."""
    from fastgsl.validation import LabelRange
    if not _has_isa(isa):
        pytest.skip(f"this CPU / build has no {'AVX2' if isa == 2 else 'AVX-512'} variant")
    z, t, d, dp, spec = make_case(2, 3, (23, 29, 17), "softmax", "labels", True, seed=12)
    t = t.to(tdtype)
    rule = LabelRange("labels", 3)
    ref = vs._forward_native(LIB, z, t, d, dp, spec, isa)
    assert torch.equal(vs._forward_native(LIB, z, t, d, dp, spec, isa, labels=rule), ref)
    for flat in (5, t.numel() - 1, t[0].numel() + 16 * 7):
        bad = t.clone()
        bad.view(-1)[flat] = 3
        with pytest.raises(ValueError, match=r"found values in \[0, 3\]"):
            vs._forward_native(LIB, z, bad, d, dp, spec, isa, labels=rule)


NEEDS = [ALL, frozenset({SP, DP}), *COMPILED_NEEDS]
NEED_IDS = ["all", "sp_dp"] + ["+".join(STAT_NAMES[k] for k in sorted(n)) for n in COMPILED_NEEDS]


@pytest.mark.parametrize("C", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("tdtype", [torch.int64, torch.uint8])
@pytest.mark.parametrize("need", NEEDS, ids=NEED_IDS)
@pytest.mark.parametrize("sp", [(13, 11, 7), (8, 6, 4)], ids=["ragged", "aligned"])
def test_channel_builds_give_the_generic_bits(C, tdtype, need, sp):
    """fp32 logits with a softmax over int64 or uint8 labels run a build compiled for their channel count (2 to 5),
    and with int64 labels and one of the training objectives' stat sets (``COMPILED_NEEDS``), in the AVX2 and
    AVX-512 code, one compiled for that set too; every other case runs the generic one, and all add in the same
    order.  The same one-hot target given as floats takes the generic build: the sums and the gradient are
    bit-identical, for every ISA, in full and partial groups, with only some of the stats, and with the gradient
    rows aligned (streamed) or not."""
    z, t, d, dp, _ = make_case(2, C, sp, "softmax", "labels", True, seed=20 + C)
    spec = StatSpec("softmax", need)
    onehot = torch.nn.functional.one_hot(t, C).movedim(-1, 1).float()
    w = torch.randn(2, C, K)
    for isa in (1, 2, 3):
        if not _has_isa(isa):
            continue
        by_labels = (vs._forward_native(LIB, z, t.to(tdtype), d, dp, spec, isa),
                     vs._backward_native(LIB, w, z, t.to(tdtype), d, dp, spec, isa))
        by_floats = (vs._forward_native(LIB, z, onehot, d, dp, spec, isa),
                     vs._backward_native(LIB, w, z, onehot, d, dp, spec, isa))
        assert torch.equal(by_labels[0], by_floats[0]) and torch.equal(by_labels[1], by_floats[1]), isa


def test_isa_codes():
    """0 picks the best build the CPU has, 1 (baseline) always exists, an unknown code is refused (2)."""
    assert _has_isa(0) and _has_isa(1)
    assert not _has_isa(4) and not _has_isa(-1)


@pytest.mark.parametrize("act", ["softmax", "sigmoid"])
def test_nan_logits_propagate(act):
    z, t, d, dp, spec = make_case(3, 3, (9, 7, 5), act, "labels", True, seed=11)
    z[1, 2, 4, 3, 2] = float("nan")
    w = torch.randn(3, 3, K)
    s, g = native(z, t, d, dp, spec, w)
    assert torch.isfinite(s[[0, 2]]).all() and torch.isfinite(g[[0, 2]]).all()
    if act == "softmax":  # one NaN logit poisons the voxel's whole softmax
        assert s[1, :, SP].isnan().all() and g[1, :, 4, 3, 2].isnan().all()
    else:
        assert s[1, 2, SP].isnan() and g[1, 2, 4, 3, 2].isnan()
    assert g[1].isnan().sum() == (3 if act == "softmax" else 1)


def test_extreme_logits_match_naive():
    """Very large / small logits (exp under- and overflow inside the activation) stay finite and exact."""
    z, t, d, dp, spec = make_case(3, 3, (9, 7, 5), "softmax", "labels", False, seed=12)
    z = z * 60.0
    w = torch.randn(3, 3, K)
    s, g = native(z, t, d, dp, spec, w)
    assert stats_err(s, naive_stats(z, t, d, dp, spec)) <= 2e-6
    assert grad_err(g, naive_grad(z, t, d, dp, spec, w)) <= 2e-5
    sig = StatSpec("sigmoid", ALL)
    s, g = native(z, t.float().unsqueeze(1).expand_as(z) / 2, d, dp, sig, w)
    tf = t.float().unsqueeze(1).expand_as(z) / 2
    assert stats_err(s, naive_stats(z, tf, d, dp, sig)) <= 2e-6
    assert grad_err(g, naive_grad(z, tf, d, dp, sig, w)) <= 2e-5


def test_dispatch_engines(monkeypatch):
    z, t, d, dp, spec = make_case(1, 3, (5, 7, 9), "softmax", "labels", True)
    w = torch.randn(1, 3, K)
    native(z, t, d, dp, spec, w)  # asserts that the C++ passes ran
    with observe.engines() as seen:
        s64 = vs.forward_host(z.double(), t, d, dp, spec)
    assert seen.all("voxel_stats") == ["torch"] and s64.dtype == torch.float64  # fp64 (gradcheck) stays on PyTorch
    monkeypatch.setenv("FASTGSL_NATIVE_STATS", "0")
    with observe.engines() as seen:
        s = vs.forward_host(z, t, d, dp, spec)
    assert seen.all("voxel_stats") == ["torch"]
    assert stats_err(s, naive_stats(z, t, d, dp, spec)) <= 2e-5


def test_losses_run_on_the_native_passes(monkeypatch):
    from fastgsl.losses import CompositeLoss, DiceCELoss, GeneralizedSurfaceLoss
    monkeypatch.setenv("FASTGSL_BACKEND", "torch")
    z, t, d, _, _ = make_case(3, 4, (11, 9, 13), "softmax", "labels", False, seed=13)
    loss = CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5)
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("FASTGSL_NATIVE_STATS", flag)
        zz = z.clone().requires_grad_()
        with observe.engines() as seen:
            v = loss(zz, t, d)
            v.backward()
        results[flag] = (v.detach(), zz.grad, seen.all("voxel_stats"))
    # one statistics pass and one gradient pass for the composite, on the engine asked for
    assert results["1"][2] == ["native", "native"] and results["0"][2] == ["torch", "torch"]
    torch.testing.assert_close(results["1"][0], results["0"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results["1"][1], results["0"][1], rtol=1e-4, atol=1e-7)


def test_empty_inputs():
    spec = StatSpec("softmax", ALL)
    z = torch.zeros(2, 3, 0, 5)
    s = native(z, torch.zeros(2, 0, 5, dtype=torch.long), torch.zeros(2, 3, 0, 5), None, spec)
    assert s.shape == (2, 3, K) and (s == 0).all()
    g = vs.backward_host(torch.ones(2, 3, K), z, torch.zeros(2, 0, 5, dtype=torch.long),
                                      torch.zeros(2, 3, 0, 5), None, spec)
    assert g.shape == z.shape


# ---------------------------------------------------------------------------------------------- the loader
TINY = 'extern "C" const char* tiny_source_hash() { return TINY_HASH; }\nextern "C" int tiny_value() { return %d; }\n'


def test_native_loader_compiles_into_cache_and_checks_the_hash(tmp_path, monkeypatch):
    kdir, cache = tmp_path / "k", tmp_path / "cache"
    kdir.mkdir()
    monkeypatch.setenv("FASTGSL_CACHE_DIR", str(cache))
    (kdir / "tiny.cpp").write_text(TINY % 1)

    spec = manifest.HostLibrarySpec("_tiny_host_for_tests", "tiny.cpp", ("tiny.cpp",), "TINY_HASH", "tiny")

    def make():
        return _native.HostLibrary(spec, lambda lib: lib, kernel_dir=kdir)

    lib, path = make().load()
    assert lib is not None and path.startswith(str(cache))
    assert lib.tiny_source_hash().decode() == manifest.source_hash(kdir, ["tiny.cpp"]) and lib.tiny_value() == 1
    again, path2 = make().load()
    assert path2 == path  # cached, not rebuilt
    (kdir / "tiny.cpp").write_text(TINY % 2)  # new sources: a new library
    lib3, path3 = make().load()
    assert path3 != path and lib3.tiny_value() == 2
    (kdir / "tiny.cpp").write_text("this is not C++")
    lib4, reason = make().load()
    assert lib4 is None and "failed" in reason


def test_compiled_stat_sets_cover_the_training_objectives():
    """``COMPILED_NEEDS`` holds the stat sets of ``fastgsl.train``'s softmax objectives and of the nnU-Net trainers'
    losses, so that those run the builds compiled for them: a loss whose stats change must change the list too."""
    from fastgsl.losses import CompositeLoss
    from fastgsl.nnunet import loss as nnunet_loss
    from fastgsl.schedules import ConstantSchedule
    from fastgsl.train.objectives import LOSS_LABELS, build_loss
    from fastgsl.train.preprocess import TaskSpec

    def needs(loss):
        parts = (loss.region, loss.boundary) if isinstance(loss, CompositeLoss) else (loss,)
        return frozenset().union(*(part.needs for part in parts))

    task = TaskSpec("labels", "toy", ("liver", "tumour"), 1)
    train = {name: needs(build_loss(name, task, ConstantSchedule(0.5))) for name in ("dice_ce", "gsl", "bl", "hl")}
    region, _ = nnunet_loss.region_loss(regions=False, batch_dice=False)
    nnunet = {"dice_ce": region.needs} | {
        kind: region.needs | nnunet_loss.boundary_loss(kind, regions=False, spacing=(1.0, 1.0, 1.0)).needs
        for kind in nnunet_loss.BOUNDARY_TERMS}
    assert set(train) < set(LOSS_LABELS)
    for where, sets in (("fastgsl.train", train), ("nnU-Net", nnunet)):
        for name, stat_set in sets.items():
            assert stat_set in COMPILED_NEEDS, (where, name, sorted(STAT_NAMES[k] for k in stat_set))
