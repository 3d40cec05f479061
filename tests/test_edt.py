"""The EDT engine (fastgsl.ops.edt): exactness against scipy, the host build really in use, the scipy last resort,
the nvcc compile check of kernels/edt_kernel.cu, and the CUDA path (CuPy) where a GPU exists."""
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

import fastgsl.ops.edt as E

from fastgsl import _native  # noqa: E402

KERNELS = _native.KERNEL_DIR
CONVENTIONS = ("itk", "kervadec", "edt")


def scipy_sites(sites: np.ndarray, spatial_dims: int, spacing=None) -> np.ndarray:
    """Peer: scipy's float64 EDT to the True voxels, rounded to float32; +inf for an item without sites."""
    shape = sites.shape[sites.ndim - spatial_dims:]
    flat = sites.reshape((-1,) + shape)
    out = np.empty(flat.shape, np.float32)
    for i, s in enumerate(flat):
        out[i] = ndimage.distance_transform_edt(~s, sampling=spacing) if s.any() else np.inf
    return out.reshape(sites.shape)


def random_sites(rng, shape, p):
    return rng.random(shape) < p


@pytest.mark.parametrize("shape", [(3, 17, 23), (2, 9, 13, 11), (2, 1, 7), (2, 5, 1, 9)])
@pytest.mark.parametrize("p", [0.003, 0.1, 0.6])
def test_distance_to_sites_exact_isotropic(shape, p, seen):
    rng = np.random.default_rng(hash((shape, p)) % 2 ** 32)
    sites = random_sites(rng, shape, p)
    nd = len(shape) - 1
    got = E.distance_to_sites(torch.from_numpy(sites), spatial_dims=nd)
    assert got.dtype == torch.float32 and got.shape == shape
    assert seen.last("edt") == "host"
    np.testing.assert_array_equal(got.numpy(), scipy_sites(sites, nd))  # bitwise, inf included


@pytest.mark.parametrize("shape,spacing", [((2, 19, 15), (0.7, 1.9)), ((2, 11, 9, 13), (2.5, 0.6, 1.1)),
                                           ((1, 7, 9, 5), (0.5, 2.0, 4.0))])
def test_distance_to_sites_anisotropic(shape, spacing):
    rng = np.random.default_rng(3)
    sites = random_sites(rng, shape, 0.05)
    nd = len(spacing)
    got = E.distance_to_sites(torch.from_numpy(sites), spacing, spatial_dims=nd).numpy()
    ref = scipy_sites(sites, nd, spacing)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0)
    if all(np.log2(s).is_integer() for s in spacing):  # dyadic spacing: every operation is exact
        np.testing.assert_array_equal(got, ref)


def test_distance_to_sites_large_axes():
    """cuCIM once broke above 1024 voxels per axis: both passes over axes > 1024."""
    rng = np.random.default_rng(5)
    for shape in [(1103, 61), (47, 1109)]:
        sites = random_sites(rng, shape, 2e-4)
        sites[rng.integers(shape[0]), rng.integers(shape[1])] = True
        got = E.distance_to_sites(torch.from_numpy(sites), spatial_dims=2).numpy()
        np.testing.assert_array_equal(got, scipy_sites(sites, 2))
    sites = np.zeros((1, 1100, 1100), bool)
    sites[0, 3, 1090], sites[0, 1097, 20] = True, True  # long parabola envelopes on both axes
    got = E.distance_to_sites(torch.from_numpy(sites), spatial_dims=2).numpy()
    np.testing.assert_array_equal(got, scipy_sites(sites, 2))


def test_distance_to_sites_noncontiguous_and_batched_dims():
    rng = np.random.default_rng(7)
    sites = torch.from_numpy(random_sites(rng, (3, 4, 9, 11), 0.05))
    view = sites.permute(1, 0, 2, 3)[:, ::2]  # non-contiguous, two leading dims
    got = E.distance_to_sites(view, spatial_dims=2)
    np.testing.assert_array_equal(got.numpy(), scipy_sites(view.numpy(), 2))


def test_distance_to_sites_errors():
    with pytest.raises(TypeError, match="bool"):
        E.distance_to_sites(torch.zeros(4, 4), spatial_dims=2)
    with pytest.raises(ValueError, match="spatial_dims"):
        E.distance_to_sites(torch.zeros(4, dtype=torch.bool), spatial_dims=2)
    with pytest.raises(ValueError, match="spatial_dims"):
        E.distance_to_sites(torch.zeros(2, 3, 4, 4, 4, dtype=torch.bool), spatial_dims=4)
    with pytest.raises(ValueError, match="spacing"):
        E.distance_to_sites(torch.zeros(4, 4, dtype=torch.bool), (1.0, -1.0), spatial_dims=2)
    with pytest.raises(ValueError, match="spacing"):
        E.distance_to_sites(torch.zeros(4, 4, dtype=torch.bool), (1.0,), spatial_dims=2)
    with pytest.raises(TypeError):
        E.distance_to_sites(np.zeros((4, 4), bool), spatial_dims=2)


def test_empty_spatial_and_batch():
    assert E.distance_to_sites(torch.zeros(0, 5, 5, dtype=torch.bool), spatial_dims=2).shape == (0, 5, 5)
    assert E.labels_dtm(torch.zeros(2, 0, 5, dtype=torch.long), 3).shape == (2, 3, 0, 5)


def test_host_build_is_the_cpu_engine(monkeypatch, seen):
    """The CPU path is the compiled kernel source, never scipy: the scipy runner is made to fail."""
    assert E.engine_name("cpu") == "host"
    lib, where = E.host_library.load()
    assert lib is not None and Path(where).exists(), where

    def no_scipy(*a, **k):
        raise AssertionError("scipy fallback used")

    monkeypatch.setattr(E, "_scipy_run", no_scipy)
    lab = torch.randint(0, 3, (2, 9, 10, 11))
    for conv in CONVENTIONS:
        E.labels_dtm(lab, 3, convention=conv)
        assert seen.last("edt") == "host"
    E.distance_to_sites(lab == 1, spatial_dims=3)
    assert seen.last("edt") == "host"


def test_scipy_last_resort_warns_once_and_agrees(monkeypatch, seen):
    lab = torch.randint(0, 4, (2, 7, 9, 8))
    native = {c: E.labels_dtm(lab, 4, (1.0, 2.0, 0.5), convention=c, fill_value=3.0) for c in CONVENTIONS}
    sites_native = E.distance_to_sites(lab == 2, spatial_dims=3)
    monkeypatch.setitem(E._engines, "host", None)
    monkeypatch.setitem(E._engines, "host_reason", "disabled by the test")
    monkeypatch.setattr(E, "_warned", set())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for c in CONVENTIONS:
            fallback = E.labels_dtm(lab, 4, (1.0, 2.0, 0.5), convention=c, fill_value=3.0)
            assert seen.last("edt") == "scipy"
            torch.testing.assert_close(fallback, native[c], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(E.distance_to_sites(lab == 2, spatial_dims=3), sites_native)
    msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
    assert len(msgs) == 1 and "scipy" in msgs[0] and "disabled by the test" in msgs[0]
    assert E.engine_name("cpu") == "scipy"


def test_all_mask_dtypes_give_the_same_map():
    rng = np.random.default_rng(11)
    m = torch.from_numpy(random_sites(rng, (2, 9, 7, 5), 0.3))
    ref = E.signed_dtm(m, spatial_dims=3, convention="edt", fill_value=1.0)
    for dt in [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32,
               torch.float64]:
        x = m.to(dt) * 3  # any nonzero value is object
        torch.testing.assert_close(E.signed_dtm(x, spatial_dims=3, convention="edt", fill_value=1.0), ref,
                                   rtol=0, atol=0)
    labels = torch.from_numpy(rng.integers(0, 3, (2, 9, 7, 5)))
    ref = E.labels_dtm(labels, 3)
    for dt in [torch.uint8, torch.int8, torch.int16, torch.int32]:
        torch.testing.assert_close(E.labels_dtm(labels.to(dt), 3), ref, rtol=0, atol=0)


def test_large_class_index_with_narrow_labels():
    """Class ids above the label dtype's range match nothing (no wrap-around): uint8 label 44 is not class 300."""
    lab = torch.full((1, 5, 6), 44, dtype=torch.uint8)
    lab[0, 2, 3] = 3
    out = E.labels_dtm(lab, 301, fill_value=7.0)
    assert torch.all(out[0, 300] == 7.0) and torch.all(out[0, 44] != 7.0)


def test_deterministic_bitwise():
    lab = torch.randint(0, 5, (2, 13, 11, 9))
    a = E.labels_dtm(lab, 5, (0.7, 1.1, 1.3), convention="kervadec")
    b = E.labels_dtm(lab, 5, (0.7, 1.1, 1.3), convention="kervadec")
    assert torch.equal(a, b)


def _nvcc():
    return shutil.which("nvcc") or next((p for p in ["/usr/local/cuda/bin/nvcc"] if Path(p).exists()), None)


@pytest.mark.skipif(_nvcc() is None, reason="nvcc not found (PATH, /usr/local/cuda/bin)")
def test_nvcc_compiles_the_cuda_source(tmp_path):
    out = tmp_path / "edt.ptx"
    res = subprocess.run([_nvcc(), "--ptx", "-arch=sm_80", "--fmad=false", "-Werror", "all-warnings",
                          str(KERNELS / "edt_kernel.cu"), "-o", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ptx = out.read_text()
    for name in ["edt_envelope"] + [f"edt_first_{s}" for s in ["u8", "i8", "i16", "i32", "i64", "f32", "f64"]]:
        assert f".entry {name}(" in ptx, name


# ------------------------------------------------------------------------------------------------ CUDA (CuPy)
def _cuda_skip_reason():
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    return E.cupy_unavailable_reason()


cuda = pytest.mark.skipif(_cuda_skip_reason() is not None, reason=f"CuPy EDT path needs a GPU: {_cuda_skip_reason()}")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("shape,spacing", [((2, 33, 29), None), ((3, 17, 19, 23), None),
                                           ((2, 17, 19, 23), (0.7, 1.3, 2.1)), ((1, 1100, 37), None)])
@pytest.mark.parametrize("convention", ["sites", "itk", "edt", "kervadec"])
def test_cuda_equals_host_bitwise(shape, spacing, convention, seen):
    assert E.engine_name("cuda") == "cupy"
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, shape, generator=g)
    labels[0] = 1  # a full class 1 / empty classes 0, 2 item
    nd = len(shape) - 1
    if convention == "sites":
        host = E.distance_to_sites(labels == 2, spacing, spatial_dims=nd)
        dev = E.distance_to_sites((labels == 2).cuda(), spacing, spatial_dims=nd)
    else:
        host = E.labels_dtm(labels, 3, spacing, convention=convention, fill_value=4.0)
        dev = E.labels_dtm(labels.cuda(), 3, spacing, convention=convention, fill_value=4.0)
    assert seen.last("edt") == "cupy" and dev.device.type == "cuda"
    assert torch.equal(dev.cpu(), host)


@pytest.mark.gpu
@cuda
def test_cuda_runs_on_torch_current_stream():
    labels = torch.randint(0, 4, (4, 31, 33, 35))
    host = E.labels_dtm(labels, 4, convention="itk", fill_value=2.0)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = labels.cuda(non_blocking=False)
        out = E.labels_dtm(x, 4, convention="itk", fill_value=2.0)
        total = out.sum()  # consumed on the same stream without any explicit synchronisation
    side.synchronize()
    assert torch.equal(out.cpu(), host)
    torch.testing.assert_close(total.cpu(), host.sum())


@pytest.mark.parametrize("threads", [1, 3])
def test_gpu_workspace_layout_on_host(monkeypatch, threads):
    """The CUDA launch keeps the envelope stacks slot-minor (entry k of thread t at k * slots + t); the host runs the
    same indexing with a shared interleaved workspace and must give the same bits."""
    lab = torch.randint(0, 3, (2, 21, 17, 13))
    ref = {c: E.labels_dtm(lab, 3, (0.9, 1.0, 1.7), convention=c) for c in CONVENTIONS}
    ref_sites = E.distance_to_sites(lab == 1, spatial_dims=3)
    monkeypatch.setattr(E._HostEngine, "interleave", True)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for c in CONVENTIONS:
            assert torch.equal(E.labels_dtm(lab, 3, (0.9, 1.0, 1.7), convention=c), ref[c])
        assert torch.equal(E.distance_to_sites(lab == 1, spatial_dims=3), ref_sites)
    finally:
        torch.set_num_threads(prev)


# ------------------------------------------------------------------------------------------------ host tiles
def _edge_case_labels(shape, classes, seed):
    """Random labels plus lines that hold no site or only sites: a constant item, a constant plane along every
    axis, a single-voxel object, and labels outside [0, classes) (which match no class)."""
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, classes, shape, generator=g)
    nd = len(shape) - 1
    lab[0] = 1
    if shape[0] > 1:
        item = lab[1]
        for ax in range(nd):
            idx = [slice(None)] * nd
            idx[ax] = 0
            item[tuple(idx)] = 0
        item[(0,) * nd] = classes  # out of range: background of every class
        item[tuple(n - 1 for n in item.shape)] = -1
    if shape[0] > 2:
        lab[2] = 0
        lab[2][tuple(n // 2 for n in shape[1:])] = 1
    return lab


def _run_both(monkeypatch, fn):
    """fn() on the host's tiled passes, then on the CUDA build's line routines run by the host."""
    tiled = fn()
    with monkeypatch.context() as m:
        m.setattr(E._HostEngine, "interleave", True)
        generic = fn()
    return tiled, generic


# shapes: tile widths that are not a multiple of 8 (inner strides 13, 9, 5, 3, 2), axes of length 1, 2-D
TILE_SHAPES = [((3, 7, 11, 13), (0.7, 1.3, 2.1)), ((3, 19, 9, 5), None), ((2, 1, 6, 17), (1.0, 0.5, 1.5)),
               ((3, 12, 1, 9), None), ((2, 5, 8, 1), (2.0, 0.75, 1.0)), ((3, 40, 3), None), ((3, 13, 21), (0.6, 1.7)),
               ((2, 1, 1, 10), None), ((3, 33, 2, 2), None)]


@pytest.fixture(params=[0, 1], ids=["scalar-tiles", "avx512-tiles"])
def simd(request):
    """Runs a test with the host's scalar tiles, then with its AVX-512 tiles (skipped where the CPU lacks AVX-512F)."""
    lib = E._host_engine().lib
    before = lib.fastgsl_edt_simd(-1)
    try:
        if lib.fastgsl_edt_simd(request.param) != request.param:
            pytest.skip("this CPU has no AVX-512F: the host runs the scalar tiles only")
        yield request.param
    finally:
        lib.fastgsl_edt_simd(before)


@pytest.mark.parametrize("shape,spacing", TILE_SHAPES)
@pytest.mark.parametrize("threads", [1, 3])
def test_host_tiles_equal_the_cuda_line_routines(monkeypatch, shape, spacing, threads, simd, seen):
    """The host's own passes (tiles of neighbouring lines in lockstep, scalar or AVX-512 lanes, the itk contour as
    row loops, byte codes of integer labels) give the bits of kernels/edt_kernel.cu's line routines, which the CUDA
    build runs."""
    lab = _edge_case_labels(shape, 3, seed=len(shape) * 31 + shape[1])
    nd = len(shape) - 1
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert E._host_engine().lib.fastgsl_edt_simd(-1) == simd
        for c in CONVENTIONS:
            tiled, generic = _run_both(monkeypatch,
                                       lambda: E.labels_dtm(lab, 3, spacing, convention=c, fill_value=2.5))
            assert torch.equal(tiled, generic), c
            mask = lab == 1
            tiled, generic = _run_both(monkeypatch, lambda: E.signed_dtm(mask, spacing, spatial_dims=nd,
                                                                         convention=c, fill_value=2.5))
            assert torch.equal(tiled, generic), c
        tiled, generic = _run_both(monkeypatch, lambda: E.distance_to_sites(lab == 2, spacing, spatial_dims=nd))
        assert torch.equal(tiled, generic)
    finally:
        torch.set_num_threads(prev)
    assert set(seen.all("edt")) == {"host"}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float32,
                                   torch.float64])
def test_host_itk_first_pass_every_label_dtype(monkeypatch, dtype, simd):
    """The itk contour of the host (labels narrowed to byte codes where they are integers, the label test kept as
    is for floats and int8) against the CUDA line routine, for every label dtype the kernels take."""
    lab = _edge_case_labels((3, 9, 10, 11), 4, seed=5)
    if dtype == torch.uint8:
        lab = lab.clamp(min=0)  # uint8 cannot hold -1
    lab = lab.to(dtype)
    for mode_fn in (lambda: E.labels_dtm(lab, 4, (1.0, 0.8, 1.2), convention="itk", fill_value=3.0),
                    lambda: E.signed_dtm(lab, spatial_dims=3, convention="itk", fill_value=3.0)):
        tiled, generic = _run_both(monkeypatch, mode_fn)
        assert torch.equal(tiled, generic)
    ref = E.labels_dtm(lab.to(torch.int64), 4, (1.0, 0.8, 1.2), convention="itk", fill_value=3.0)
    assert torch.equal(E.labels_dtm(lab, 4, (1.0, 0.8, 1.2), convention="itk", fill_value=3.0), ref)


def test_host_itk_many_classes(monkeypatch, simd):
    """More than 255 classes: the byte codes cannot hold them, the labels are tested as they are."""
    lab = torch.randint(0, 300, (1, 6, 7, 8), generator=torch.Generator().manual_seed(3))
    lab[0, :3] = 299
    tiled, generic = _run_both(monkeypatch, lambda: E.labels_dtm(lab, 300, convention="itk", fill_value=1.0))
    assert torch.equal(tiled, generic)


def test_out_and_the_kept_workspace():
    """``out=`` receives the result (and is returned); repeated calls of one size reuse the host workspace and give
    the same bits; a result handed back is never overwritten by a later call; bad ``out`` is refused."""
    g = torch.Generator().manual_seed(5)
    a = torch.rand(2, 9, 10, 11, generator=g) < 0.05
    b = torch.rand(2, 9, 10, 11, generator=g) < 0.05
    ra = E.distance_to_sites(a, (0.7, 1.0, 1.3), spatial_dims=3)
    rb = E.distance_to_sites(b, (0.7, 1.0, 1.3), spatial_dims=3)
    keep = ra.clone()
    assert torch.equal(E.distance_to_sites(a, (0.7, 1.0, 1.3), spatial_dims=3), keep)
    assert torch.equal(ra, keep) and not torch.equal(ra, rb)
    out = torch.empty(2, 9, 10, 11)
    got = E.distance_to_sites(a, (0.7, 1.0, 1.3), spatial_dims=3, out=out)
    assert got.data_ptr() == out.data_ptr() and torch.equal(out, keep)
    with pytest.raises(ValueError, match="out"):
        E.distance_to_sites(a, spatial_dims=3, out=torch.empty(2, 9, 10, 11, dtype=torch.float64))
