"""fastgsl.metrics against the peers themselves: MONAI 1.6 (``convention="monai"``), SimpleITK running the paper's
evaluation (``convention="paper"``) and DeepMind ``surface-distance`` (where its surfel definition coincides).

Inputs are random blobs (odd sizes, 2-D and 3-D, several classes, objects touching the border) with injected edge
cases: one-voxel objects, empty and full masks, on isotropic, anisotropic and per-item spacing.  Every test whose
result goes through the distances runs on both ways of getting them (the ``distance_path`` fixture), and checks
through ``fastgsl.observe`` that the requested one answered.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from fastgsl import metrics, observe
from fastgsl.ops import nearest
from fastgsl.metrics import (average_surface_distance, dice_score, hausdorff_distance, segment_quantile,
                             surface_dice)

monai_metrics = pytest.importorskip("monai.metrics")
sitk = pytest.importorskip("SimpleITK")
surface_distance = pytest.importorskip("surface_distance")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                                        "ignore::DeprecationWarning", "ignore::RuntimeWarning")

TOL = dict(rtol=1e-4, atol=1e-4)


NO_TREE = "the host nearest-site library could neither be found nor compiled here"


@pytest.fixture(params=["dense", "sparse"])
def distance_path(request, monkeypatch):
    """Runs the test on one way of getting the distances, the dense EDT or the k-d tree, and checks afterwards,
    through ``fastgsl.observe``, that the test's metric calls took it: every call that measured distances, and at
    least one.  Given None (indirect parametrisation), it checks instead that no call measured any distance."""
    path = request.param
    if path == "sparse" and not nearest.available():
        pytest.skip(NO_TREE)
    if path is not None:
        monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", path)
    with observe.engines() as seen:
        yield path
    answered = seen.all("metric_distances")
    if path is None:
        assert answered == [], f"no distance was to be measured, but {answered} answered"
    else:
        assert answered and set(answered) == {path}, f"FASTGSL_METRIC_DISTANCES={path}, but {answered} answered"


# ---------------------------------------------------------------------------------------------------------------
# inputs

def blobs(rng, B, C, shape, sigma=1.3):
    """Independent random binary blobs per (item, channel): several components, many touching the border."""
    f = rng.standard_normal((B, C) + shape)
    out = np.empty(f.shape, bool)
    for b in range(B):
        for c in range(C):
            g = ndimage.gaussian_filter(f[b, c], sigma)
            out[b, c] = g > np.quantile(g, rng.uniform(0.4, 0.8))
    return out


def with_edge_cases(m_p, m_t):
    """Inject edge cases into channels >= 1 (background channel 0 is dropped by default)."""
    p, t = m_p.copy(), m_t.copy()
    B, C = p.shape[:2]
    corner = (0,) * (p.ndim - 2)
    centre = tuple(n // 2 for n in p.shape[2:])
    # item 0, class 1: one-voxel prediction in the corner (touches the border) vs a one-voxel target in the centre
    p[0, 1] = False
    p[(0, 1) + corner] = True
    t[0, 1] = False
    t[(0, 1) + centre] = True
    # item 1: class 1 both empty, class 2 prediction empty; item 0 class 2: target empty
    p[1, 1] = t[1, 1] = False
    p[1, 2] = False
    t[0, 2] = False
    if C > 3:
        # item 1, class 3: full target against a blob; item 0, class 3: both full
        t[1, 3] = True
        p[0, 3] = t[0, 3] = True
    return torch.from_numpy(p), torch.from_numpy(t)


def case(dim, seed=0, B=3, C=5):
    rng = np.random.default_rng(seed)
    shape = (19, 23) if dim == 2 else (13, 11, 15)
    return with_edge_cases(blobs(rng, B, C, shape), blobs(rng, B, C, shape))


SPACINGS = {
    2: [None, (0.7, 1.3), [(0.5, 1.1), (1.0, 1.0), (2.0, 0.9)]],
    3: [None, (1.5, 0.8, 1.1), [(0.6, 0.9, 2.5), (1.0, 1.0, 1.0), (1.5, 0.8, 1.1)]],
}


def monai_spacing(spacing):
    return [list(s) for s in spacing] if isinstance(spacing, list) else spacing


def one_empty(p, t, include_background=False):
    dims = tuple(range(2, p.ndim))
    a, b = p.any(dims), t.any(dims)
    x = a ^ b
    return x if include_background else x[:, 1:]


def assert_close(ours, ref, **kw):
    ref = torch.as_tensor(ref, dtype=torch.float32)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    torch.testing.assert_close(ours, ref, equal_nan=True, **{**TOL, **kw})


# ---------------------------------------------------------------------------------------------------------------
# exact percentile by selection

@pytest.mark.parametrize("method", ["select", "radix"])
def test_segment_quantile_equals_linear_quantile(method):
    rng = np.random.default_rng(0)
    counts = [1, 2, 7, 0, 50, 333, 1000, 3]
    vals = []
    for n in counts:
        # ties and zeros on purpose: voxel distances repeat a lot
        vals.append(np.round(rng.exponential(3.0, n) * 4) / 4 if n % 2 else rng.exponential(3.0, n))
    vals.append(10.0 ** rng.uniform(-6, 6, 777))  # every exponent: all three radix digits matter
    vals.append(np.repeat(rng.uniform(0, 9, 40), 5))  # heavy ties
    counts += [777, 200]
    flat = torch.from_numpy(np.concatenate(vals).astype(np.float32))
    for q in (0.0, 0.05, 0.5, 0.95, 0.999, 1.0, float(rng.uniform())):
        ours = segment_quantile(flat, torch.tensor(counts), q, method=method)
        other = segment_quantile(flat, torch.tensor(counts), q, method={"select": "radix", "radix": "select"}[method])
        torch.testing.assert_close(ours, other, rtol=0, atol=0, equal_nan=True)  # both exact: the same bits
        for s, v in enumerate(vals):
            v32 = v.astype(np.float32).astype(np.float64)
            if len(v) == 0:
                assert math.isnan(ours[s])
                continue
            ref_np = np.percentile(v32, q * 100)
            ref_torch = torch.quantile(torch.from_numpy(v32), q).item()
            assert ours[s].item() == pytest.approx(ref_np, rel=1e-12, abs=1e-12)
            assert ours[s].item() == pytest.approx(ref_torch, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("method", ["select", "radix"])
def test_segment_quantile_with_unstored_zeros_equals_the_stored_zeros(method):
    """``zeros=``: the quantile of each segment with that many zeros added, without storing them (every k, so the
    order statistic falls among the zeros, on their last one, and past them)."""
    rng = np.random.default_rng(1)
    counts = [0, 1, 5, 0, 30, 4]
    zeros = [0, 3, 2, 4, 30, 0]
    vals = [np.round(rng.exponential(2.0, n) * 2) / 2 + (0.5 if s % 2 else 0.0) for s, n in enumerate(counts)]
    flat = torch.from_numpy(np.concatenate(vals).astype(np.float32))
    full = torch.from_numpy(np.concatenate([np.concatenate([v, np.zeros(z)]) for v, z in zip(vals, zeros)])
                            .astype(np.float32))
    n_full = torch.tensor([c + z for c, z in zip(counts, zeros)])
    for q in [i / 20 for i in range(21)] + [float(rng.uniform())]:
        got = segment_quantile(flat, torch.tensor(counts), q, method=method, zeros=torch.tensor(zeros))
        ref = segment_quantile(full, n_full, q, method=method)
        torch.testing.assert_close(got, ref, rtol=0, atol=0, equal_nan=True)


def test_segment_quantile_refuses_an_unknown_method():
    with pytest.raises(ValueError, match="method"):
        segment_quantile(torch.ones(3), torch.tensor([3]), 0.5, method="sort")


@pytest.mark.parametrize("method", ["select", "radix"])
def test_segment_quantile_handles_inf_and_single_values(method):
    vals = torch.tensor([float("inf"), 2.0, float("inf"), 0.0, 5.0, 5.0, 5.0])
    out = segment_quantile(vals, torch.tensor([1, 2, 1, 3]), 0.95, method=method)
    assert math.isinf(out[0]) and out[2] == 0.0 and out[3] == 5.0
    assert math.isinf(out[1])  # 2 + 0.95 * (inf - 2)


# ---------------------------------------------------------------------------------------------------------------
# convention="monai" against MONAI itself

@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("sp_index", [0, 1, 2])
def test_hausdorff_matches_monai(dim, sp_index, distance_path):
    p, t = case(dim, seed=dim + 10 * sp_index)
    spacing = SPACINGS[dim][sp_index]
    for kw in (dict(), dict(percentile=95), dict(percentile=37.5, directed=True), dict(directed=True)):
        ours = hausdorff_distance(p, t, spacing=spacing, **kw)
        ref = monai_metrics.compute_hausdorff_distance(p.float(), t.float(), spacing=monai_spacing(spacing), **kw)
        if "percentile" in kw:
            # documented divergence: MONAI gives nan (inf - inf in torch.quantile), fastgsl gives +inf
            oe = one_empty(p, t)
            assert oe.any() and torch.isnan(ref[oe]).all() and torch.isinf(ours[oe]).all()
            ref = torch.where(oe, torch.full_like(ref, float("inf")), ref)
        assert_close(ours, ref)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("sp_index", [0, 1, 2])
def test_average_surface_distance_matches_monai(dim, sp_index, distance_path):
    p, t = case(dim, seed=100 + dim + 10 * sp_index)
    spacing = SPACINGS[dim][sp_index]
    for symmetric in (True, False):
        ours = average_surface_distance(p, t, spacing=spacing, symmetric=symmetric)
        ref = monai_metrics.compute_average_surface_distance(p.float(), t.float(), symmetric=symmetric,
                                                             spacing=monai_spacing(spacing))
        assert_close(ours, ref)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("sp_index", [0, 1, 2])
def test_surface_dice_matches_monai(dim, sp_index, distance_path):
    p, t = case(dim, seed=200 + dim + 10 * sp_index)
    spacing = SPACINGS[dim][sp_index]
    # exact-distance thresholds on purpose (1, sqrt 2, 2 voxels): "<=" must count the ties
    for tol in ([1.0, 1.4142135, 2.0, 0.0], 1.5):
        ours = surface_dice(p, t, tol, spacing=spacing)
        thr = tol if isinstance(tol, list) else [tol] * 4
        ref = monai_metrics.compute_surface_dice(p.float(), t.float(), thr, spacing=monai_spacing(spacing))
        assert_close(ours, ref)


def test_include_background_and_label_maps_match_monai(distance_path):
    rng = np.random.default_rng(7)
    shape = (15, 17, 13)
    C = 5
    lab = []
    for _ in range(2):
        f = ndimage.gaussian_filter(rng.standard_normal((2, C) + shape), (0, 0, 1.5, 1.5, 1.5))
        lab.append(torch.from_numpy(f.argmax(1)))
    lp, lt = lab
    lp[1][lp[1] == 3] = 0  # class 3 absent from one prediction
    onehot = lambda x: x[:, None] == torch.arange(C).view(1, C, 1, 1, 1)
    P, T = onehot(lp), onehot(lt)
    sp = (1.2, 0.9, 0.6)
    for bg in (True, False):
        for fn, ref_fn, kw in ((hausdorff_distance, monai_metrics.compute_hausdorff_distance, dict()),
                               (average_surface_distance, monai_metrics.compute_average_surface_distance,
                                dict(symmetric=True))):  # MONAI's default is symmetric=False
            a = fn(lp, lt, C, spacing=sp, include_background=bg, **kw)
            b = fn(P, T, spacing=sp, include_background=bg, **kw)
            ref = ref_fn(P.float(), T.float(), include_background=bg, spacing=sp, **kw)
            assert torch.equal(a, b)
            assert a.shape == (2, C - (0 if bg else 1))
            assert_close(a, ref)
        # (B, 1, *spatial) label maps are accepted too
        assert torch.equal(dice_score(lp[:, None], lt[:, None], C, include_background=bg),
                           dice_score(P, T, include_background=bg))
    ref = monai_metrics.compute_dice(P.float(), T.float(), include_background=True)
    assert_close(dice_score(lp, lt, C, include_background=True), ref)


def test_monai_sphere_fixture(distance_path):
    """MONAI's own test: spheres r=20 and r=40 centred at (20, 33, 22) on a 99^3 grid."""
    z, y, x = np.ogrid[:99, :99, :99]
    sphere = lambda r: torch.from_numpy((z - 20) ** 2 + (y - 33) ** 2 + (x - 22) ** 2 <= r * r)[None, None]
    a, b = sphere(20), sphere(40)
    kw = dict(include_background=True)
    assert hausdorff_distance(a, b, **kw).item() == pytest.approx(20.22375, abs=1e-4)
    assert hausdorff_distance(a, b, percentile=95, **kw).item() == pytest.approx(20.09975, abs=1e-4)
    assert average_surface_distance(a, b, **kw).item() == pytest.approx(15.117741, abs=1e-4)


def test_binary_masks_of_any_numeric_dtype():
    p, t = case(2, seed=3)
    ref = hausdorff_distance(p, t, percentile=95)
    for dt in (torch.uint8, torch.int32, torch.float32, torch.float64):
        torch.testing.assert_close(hausdorff_distance(p.to(dt), t.to(dt), percentile=95), ref, rtol=0, atol=0,
                                   equal_nan=True)


# ---------------------------------------------------------------------------------------------------------------
# convention="paper" against SimpleITK itself

def sitk_paper(p: np.ndarray, t: np.ndarray, sp, percentile=95.0, tol=1.5):
    """The paper's evaluation of one pair with SimpleITK: (HD-percentile, directed HD-percentile p->t, HD,
    ASD, directed ASD p->t, Dice), and fastgsl's "paper" surface Dice built from the same contours and maps.
    Valid where neither mask is empty (and, for ASD and surface Dice, neither is full)."""
    def img(m):
        im = sitk.GetImageFromArray(m.astype(np.uint8))
        im.SetSpacing(tuple(float(s) for s in sp[::-1]))  # ITK orders axes x, y, z
        return im

    ip, it = img(p), img(t)

    def maurer(im):
        return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
            im, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))

    dp, dt = maurer(ip), maurer(it)
    d_pt, d_tp = np.maximum(dt[p], 0), np.maximum(dp[t], 0)
    hdq_pt, hdq_tp = np.percentile(d_pt, percentile), np.percentile(d_tp, percentile)
    cp = sitk.GetArrayFromImage(sitk.LabelContour(ip)) != 0
    ct = sitk.GetArrayFromImage(sitk.LabelContour(it)) != 0
    asd_pt = np.abs(dt[cp]).mean() if cp.any() else np.nan
    asd_tp = np.abs(dp[ct]).mean() if ct.any() else np.nan
    ov = sitk.LabelOverlapMeasuresImageFilter()
    ov.Execute(ip, it)
    nsd = ((np.abs(dt[cp]) <= tol).sum() + (np.abs(dp[ct]) <= tol).sum()) / max(cp.sum() + ct.sum(), 1)
    return dict(hdq=max(hdq_pt, hdq_tp), hdq_dir=hdq_pt, hd=max(d_pt.max(), d_tp.max()),
                asd=0.5 * (asd_pt + asd_tp), asd_dir=asd_pt, dice=ov.GetDiceCoefficient(), nsd=nsd)


@pytest.mark.parametrize("dim,spacing,pad", [(2, (0.7, 1.3), 0), (3, (1.5, 0.8, 1.1), 0), (3, None, 0),
                                             (2, (1.2, 0.6), 2), (3, (0.9, 1.4, 1.0), 3)])
def test_paper_convention_matches_simpleitk(dim, spacing, pad, distance_path):
    p, t = case(dim, seed=300 + dim + pad, B=2, C=4)
    if pad:  # interior objects: the computation is cropped to the objects' box, whose edges are not the image's
        p, t = (torch.nn.functional.pad(x.to(torch.uint8), (pad, pad + 1) * dim).bool() for x in (p, t))
    sp = spacing or (1.0,) * dim
    kw = dict(spacing=spacing, convention="paper", include_background=True)
    ours = dict(hdq=hausdorff_distance(p, t, percentile=95, **kw),
                hdq_dir=hausdorff_distance(p, t, percentile=95, directed=True, **kw),
                hd=hausdorff_distance(p, t, **kw),
                asd=average_surface_distance(p, t, **kw),
                asd_dir=average_surface_distance(p, t, symmetric=False, **kw),
                dice=dice_score(p, t, convention="paper", include_background=True),
                nsd=surface_dice(p, t, 1.5, **kw))
    checked = 0
    dims = tuple(range(dim))
    for b in range(p.shape[0]):
        for c in range(p.shape[1]):
            pb, tb = p[b, c].numpy(), t[b, c].numpy()
            if not pb.any() or not tb.any():
                continue  # SimpleITK's maps are +-1.8e19 there: the policy decides (tested below)
            ref = sitk_paper(pb, tb, sp)
            keys = ["hdq", "hdq_dir", "hd", "dice"]
            if not pb.all(axis=dims) and not tb.all(axis=dims):
                keys += ["asd", "asd_dir", "nsd"]  # a full mask has no LabelContour (nan / garbage in SimpleITK)
            for k in keys:
                assert ours[k][b, c].item() == pytest.approx(float(ref[k]), rel=1e-4, abs=1e-4), (k, b, c)
            checked += 1
    assert checked >= 4


def test_paper_full_target_matches_simpleitk_for_hd(distance_path):
    """A full mask's SimpleITK map is -1.8e19 everywhere; clamped at 0 it is still meaningful for HD95."""
    rng = np.random.default_rng(5)
    p = torch.from_numpy(blobs(rng, 1, 1, (11, 14, 9)))
    t = torch.ones_like(p)
    sp = (0.8, 1.0, 1.7)
    for a, b in ((p, t), (t, p)):
        ref = sitk_paper(a[0, 0].numpy(), b[0, 0].numpy(), sp)
        ours = hausdorff_distance(a, b, percentile=95, spacing=sp, convention="paper", include_background=True)
        assert ours.item() == pytest.approx(ref["hdq"], rel=1e-4, abs=1e-4)
        # ASD: the full mask has no contour -> absent -> the policy's image diagonal
        diag = math.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape[2:], sp)))
        asd = average_surface_distance(a, b, spacing=sp, convention="paper", include_background=True)
        assert asd.item() == pytest.approx(diag, rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# DeepMind surface-distance: surfels on the corner grid; compare where the definitions coincide

def test_translated_boxes_match_deepmind_hausdorff(distance_path):
    """For equal-size boxes, the edge voxels (MONAI) and the surfel corners (DeepMind) are the same point sets up to
    a half-voxel shift, so HD coincides exactly; the area-weighted means do not (and are not compared)."""
    a = np.zeros((3, 1, 15, 17, 13), bool)
    b = np.zeros_like(a)
    a[:, 0, 2:7, 3:9, 1:6] = True
    b[0, 0, 4:9, 3:9, 1:6] = True
    b[1, 0, 3:8, 5:11, 3:8] = True
    b[2, 0, 0:5, 3:9, 6:11] = True  # touches the border
    sp = (1.2, 0.7, 2.0)
    A, Bm = torch.from_numpy(a), torch.from_numpy(b)
    ours = hausdorff_distance(A, Bm, spacing=sp, include_background=True)
    for i in range(3):
        dm = surface_distance.compute_surface_distances(b[i, 0], a[i, 0], sp)
        hd = surface_distance.compute_robust_hausdorff(dm, 100)
        assert ours[i, 0].item() == pytest.approx(hd, rel=1e-6)
        # both definitions agree that every surface point lies within HD, and not all within HD - 0.1 mm
        for tol, full in ((hd, True), (hd - 0.1, False)):
            nsd_dm = surface_distance.compute_surface_dice_at_tolerance(dm, tol)
            nsd = surface_dice(A[i:i + 1], Bm[i:i + 1], tol, spacing=sp, include_background=True).item()
            assert (nsd_dm == pytest.approx(1.0)) == full and (nsd == pytest.approx(1.0)) == full


@pytest.mark.parametrize("dim", [2, 3])
def test_hausdorff_within_half_diagonal_bound_of_deepmind(dim, distance_path):
    """Every MONAI edge voxel has a DeepMind surfel corner within h = |spacing|/2 and vice versa (a mixed 2^d
    neighbourhood always contains an object voxel with a background face neighbour), so the two HDs differ by at
    most 2h.  A real bound that fails if the edges or the spacing handling are wrong."""
    rng = np.random.default_rng(dim)
    shape = (21, 19) if dim == 2 else (13, 15, 11)
    sp = (0.7, 1.3) if dim == 2 else (1.5, 0.8, 1.1)
    p = blobs(rng, 4, 1, shape)
    t = blobs(rng, 4, 1, shape)
    ours = hausdorff_distance(torch.from_numpy(p), torch.from_numpy(t), spacing=sp, include_background=True)
    h = 0.5 * math.sqrt(sum(s * s for s in sp))
    for i in range(4):
        dm = surface_distance.compute_surface_distances(t[i, 0], p[i, 0], sp)
        assert abs(ours[i, 0].item() - surface_distance.compute_robust_hausdorff(dm, 100)) <= 2 * h + 1e-5


# ---------------------------------------------------------------------------------------------------------------
# empty-mask policy

def _pair(kind, shape=(9, 10, 11)):
    blob = torch.zeros((1, 1) + shape, dtype=torch.bool)
    blob[0, 0, 2:5, 3:7, 4:6] = True
    empty = torch.zeros_like(blob)
    return {"both": (empty, empty), "pred": (empty, blob), "target": (blob, empty)}[kind]


EMPTY_KINDS = [("both", None), ("pred", "dense"), ("pred", "sparse"), ("target", "dense"), ("target", "sparse")]


@pytest.mark.parametrize("kind,distance_path", EMPTY_KINDS, indirect=["distance_path"])
def test_empty_policy_nan(kind, distance_path):
    p, t = _pair(kind)
    kw = dict(include_background=True)
    sp = (1.0, 2.0, 0.5)
    monai_hd = monai_metrics.compute_hausdorff_distance(p.float(), t.float(), spacing=sp, **kw)
    monai_hd95 = monai_metrics.compute_hausdorff_distance(p.float(), t.float(), spacing=sp, percentile=95, **kw)
    monai_asd = monai_metrics.compute_average_surface_distance(p.float(), t.float(), spacing=sp, symmetric=True, **kw)
    monai_nsd = monai_metrics.compute_surface_dice(p.float(), t.float(), [1.0], spacing=sp, **kw)
    monai_dice = monai_metrics.compute_dice(p.float(), t.float(), **kw)
    expected = float("nan") if kind == "both" else float("inf")
    for directed in (False, True):
        hd = hausdorff_distance(p, t, spacing=sp, directed=directed, **kw).item()
        hd95 = hausdorff_distance(p, t, spacing=sp, percentile=95, directed=directed, **kw).item()
        assert (math.isnan(hd) and math.isnan(expected)) or hd == expected
        assert (math.isnan(hd95) and math.isnan(expected)) or hd95 == expected
    assert_close(hausdorff_distance(p, t, spacing=sp, **kw), monai_hd)
    assert math.isnan(monai_hd95.item())  # MONAI: nan even with one mask present (quantile of all-inf); fastgsl: inf
    assert_close(average_surface_distance(p, t, spacing=sp, **kw), monai_asd)
    assert_close(surface_dice(p, t, 1.0, spacing=sp, **kw), monai_nsd)
    assert_close(dice_score(p, t, **kw), monai_dice)


@pytest.mark.parametrize("kind,distance_path", EMPTY_KINDS, indirect=["distance_path"])
def test_empty_policy_paper(kind, distance_path):
    p, t = _pair(kind)
    sp = (1.0, 2.0, 0.5)
    diag = math.sqrt((9 * 1.0) ** 2 + (10 * 2.0) ** 2 + (11 * 0.5) ** 2)
    expected = 0.0 if kind == "both" else diag
    for convention in ("paper", "monai"):
        kw = dict(include_background=True, spacing=sp, convention=convention, empty="paper")
        for value in (hausdorff_distance(p, t, **kw), hausdorff_distance(p, t, percentile=95, **kw),
                      hausdorff_distance(p, t, percentile=95, directed=True, **kw),
                      average_surface_distance(p, t, **kw), average_surface_distance(p, t, symmetric=False, **kw)):
            assert value.item() == pytest.approx(expected, rel=1e-6)
        assert surface_dice(p, t, 1.0, **kw).item() == (1.0 if kind == "both" else 0.0)
    dice = dice_score(p, t, include_background=True, convention="paper").item()
    assert dice == (1.0 if kind == "both" else 0.0)
    if kind != "both":  # SimpleITK agrees with one mask empty (and reports inf for two empty masks)
        ov = sitk.LabelOverlapMeasuresImageFilter()
        ov.Execute(sitk.GetImageFromArray(p[0, 0].numpy().astype(np.uint8)),
                   sitk.GetImageFromArray(t[0, 0].numpy().astype(np.uint8)))
        assert ov.GetDiceCoefficient() == dice


def test_full_masks_match_monai(distance_path):
    """A full mask's MONAI edges are the image border voxels (erosion with border_value=0)."""
    p = torch.ones((2, 2, 9, 12, 7), dtype=torch.bool)
    t = p.clone()
    t[0, 1, 3:, :, :] = False
    t[1, 1] = False
    t[1, 1, 4, 5, 3] = True
    sp = (1.1, 0.6, 1.9)
    for kw in (dict(), dict(percentile=95)):
        assert_close(hausdorff_distance(p, t, spacing=sp, include_background=True, **kw),
                     monai_metrics.compute_hausdorff_distance(p.float(), t.float(), spacing=sp,
                                                              include_background=True, **kw))
    assert_close(average_surface_distance(p, t, spacing=sp, include_background=True),
                 monai_metrics.compute_average_surface_distance(p.float(), t.float(), spacing=sp, symmetric=True,
                                                                include_background=True))


# ---------------------------------------------------------------------------------------------------------------
# determinism, bad input, devices

def test_deterministic(distance_path):
    p, t = case(3, seed=11)
    sp = [(0.6, 0.9, 2.5), (1.0, 1.0, 1.0), (1.5, 0.8, 1.1)]
    for fn, kw in ((hausdorff_distance, dict(percentile=95)), (average_surface_distance, {}),
                   (surface_dice, dict(tolerance=1.0))):
        a, b = fn(p, t, spacing=sp, **kw), fn(p, t, spacing=sp, **kw)
        assert torch.equal(a.nan_to_num(-1), b.nan_to_num(-1))


def test_output_shape_device_dtype():
    p, t = case(2, seed=4, B=2, C=3)
    for out in (dice_score(p, t), hausdorff_distance(p, t), average_surface_distance(p, t), surface_dice(p, t, 1.0)):
        assert out.shape == (2, 2) and out.dtype == torch.float32 and out.device == p.device


def test_single_channel_without_background_is_empty():
    p, t = case(2, seed=6, B=2, C=3)
    for fn, kw in ((hausdorff_distance, {}), (average_surface_distance, {}), (surface_dice, dict(tolerance=1.0)),
                   (dice_score, {})):
        assert fn(p[:, :1], t[:, :1], **kw).shape == (2, 0)
    assert hausdorff_distance(p, t, percentile=np.float64(95.0)).shape == (2, 2)


def test_spacing_forms_agree():
    """A number, numpy and torch scalars, a per-call sequence and per-item rows as nested lists, an array or a
    tensor all give the same result as the per-item rows they stand for."""
    rng = np.random.default_rng(8)
    p, t = (torch.from_numpy(blobs(rng, 2, 3, (13, 11, 15))) for _ in range(2))
    rows = [(0.7, 1.3, 0.9), (1.1, 0.6, 1.4)]
    per_item = hausdorff_distance(p, t, spacing=rows, percentile=95)
    assert per_item.isfinite().all()
    assert not torch.equal(per_item[0], hausdorff_distance(p, t, spacing=rows[1], percentile=95)[0])  # rows matter
    for sp in (np.asarray(rows), torch.tensor(rows, dtype=torch.float64)):
        assert torch.equal(hausdorff_distance(p, t, spacing=sp, percentile=95), per_item)
    iso = hausdorff_distance(p, t, spacing=[(0.5,) * 3] * 2)
    for sp in (0.5, np.float32(0.5), torch.tensor(0.5), (0.5, 0.5, 0.5), np.full(3, 0.5)):
        assert torch.equal(hausdorff_distance(p, t, spacing=sp), iso)


def test_bad_input():
    p, t = case(2, seed=5, B=2, C=3)
    with pytest.raises(ValueError, match="same shape"):
        hausdorff_distance(p, t[:, :2])
    with pytest.raises(TypeError, match="same dtype"):
        hausdorff_distance(p, t.float())
    with pytest.raises(ValueError, match="same device"):
        hausdorff_distance(p, t.to("meta"))
    with pytest.raises(ValueError, match="binary"):
        hausdorff_distance(p.float() * 0.5, t.float())
    with pytest.raises(ValueError, match="binary"):
        dice_score(p.float().masked_fill(p, float("nan")), t.float())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        hausdorff_distance(p[0], t[0])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        hausdorff_distance(torch.zeros(1, 1, 3, 3, 3, 3, dtype=torch.bool),
                           torch.zeros(1, 1, 3, 3, 3, 3, dtype=torch.bool))
    lab = torch.randint(0, 3, (2, 9, 8))
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        hausdorff_distance(lab, lab.clone().fill_(3), 3)
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        dice_score(lab - 1, lab, 3)
    with pytest.raises(TypeError, match="integer"):
        hausdorff_distance(lab.float(), lab.float(), 3)
    with pytest.raises(ValueError, match="2-D and 3-D"):
        hausdorff_distance(torch.zeros(2, 9, dtype=torch.long), torch.zeros(2, 9, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="num_classes"):
        hausdorff_distance(lab, lab, 0)
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_distance(p, t, percentile=101)
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(p, t, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(p, t, spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(p, t, spacing=[(1.0, 1.0)] * 3)  # per-item spacing for 3 items, batch of 2
    with pytest.raises(ValueError, match="positive and finite"):
        hausdorff_distance(p, t, spacing=[(1.0, 1.0), (1.0, float("nan"))])
    with pytest.raises(TypeError, match="spacing"):
        hausdorff_distance(p, t, spacing="1.0")
    with pytest.raises(ValueError, match="tolerance"):
        surface_dice(p, t, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="tolerance"):
        surface_dice(p, t, -1.0)
    with pytest.raises(ValueError, match=r"convention must be one of \('monai', 'paper'\)"):
        hausdorff_distance(p, t, convention="itk")
    with pytest.raises(ValueError, match="empty"):
        hausdorff_distance(p, t, empty="zero")
    with pytest.raises(TypeError, match="torch.Tensor"):
        dice_score(p.numpy(), t.numpy())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none present on this machine)")
@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_cuda_matches_cpu(path, monkeypatch):
    if path == "sparse" and not nearest.available():
        pytest.skip(NO_TREE)
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", path)
    p, t = case(3, seed=12)
    sp = [(0.6, 0.9, 2.5), (1.0, 1.0, 1.0), (1.5, 0.8, 1.1)]
    for fn, kw in ((hausdorff_distance, dict(percentile=95)), (hausdorff_distance, {}),
                   (average_surface_distance, {}), (surface_dice, dict(tolerance=1.5)),
                   (hausdorff_distance, dict(percentile=95, convention="paper")),
                   (average_surface_distance, dict(convention="paper"))):
        with observe.engines() as seen:
            cpu = fn(p, t, spacing=sp, **kw)
            gpu = fn(p.cuda(), t.cuda(), spacing=sp, **kw)
        assert seen.all("metric_distances") == [path, "dense"]  # on a GPU the dense EDT answers, whatever is asked
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, equal_nan=True, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none present on this machine)")
def test_cuda_bad_labels_raise_with_the_values():
    lab = torch.randint(0, 3, (2, 9, 8), device="cuda")
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\); found values in \[3, 3\]"):
        hausdorff_distance(lab, lab.clone().fill_(3), 3)
    assert dice_score(lab, lab, 3).isfinite().all()  # the CUDA context is still usable


# ---------------------------------------------------------------------------------------------------------------
# choice of the distance path

def _spy_sparse(monkeypatch):
    calls = []
    real = nearest.segment_distances

    def spy(queries, *args, **kwargs):
        calls.append(queries.numel())
        return real(queries, *args, **kwargs)

    monkeypatch.setattr(nearest, "segment_distances", spy)
    return calls


def sphere_pair(n=41):
    g = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32),) * 3, indexing="ij"))
    r = ((g - n / 2) ** 2).sum(0).sqrt()
    return (r < n / 4)[None, None], (r < n / 4 + 2)[None, None]


def test_auto_takes_the_tree_for_surfaces_and_the_dense_edt_for_volumes(monkeypatch):
    if not nearest.available():
        pytest.skip(NO_TREE)
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "auto")
    calls = _spy_sparse(monkeypatch)
    p, t = sphere_pair()
    with observe.engines() as seen:
        hausdorff_distance(p, t, include_background=True, percentile=95)  # edges: a few % of the box
    assert len(calls) == 1 and seen.all("metric_distances") == ["sparse"]
    # paper HD of two disjoint slabs: every voxel of each is searched, more than the box is worth
    a = torch.zeros(1, 1, 31, 31, 31, dtype=torch.bool)
    b = torch.zeros_like(a)
    a[..., :15, :, :] = True
    b[..., 16:, :, :] = True
    with observe.engines() as seen:
        hausdorff_distance(a, b, include_background=True, convention="paper")
    assert len(calls) == 1 and seen.all("metric_distances") == ["dense"]


def test_paper_hd_searches_only_voxels_outside_the_other_mask(monkeypatch):
    if not nearest.available():
        pytest.skip(NO_TREE)
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "sparse")
    calls = _spy_sparse(monkeypatch)
    p, t = sphere_pair()
    with observe.engines() as seen:
        got = hausdorff_distance(p, t, include_background=True, convention="paper", spacing=(0.9, 1.1, 1.3))
        assert calls == [int((t & ~p).sum())]  # p lies inside t: only t's outer shell is searched
        monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "dense")
        ref = hausdorff_distance(p, t, include_background=True, convention="paper", spacing=(0.9, 1.1, 1.3))
    assert seen.all("metric_distances") == ["sparse", "dense"]
    assert torch.equal(got, ref)


def wavy_pair(n=37):
    """Two channels of shifted, rescaled wavy balls: surfaces of a few thousand voxels, enough for the k-d tree's
    sample of a percentile (every 16th query, at least 64)."""
    g = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32),) * 3, indexing="ij"))
    out = []
    for shift, scale in ((0.0, 1.0), (2.5, 0.9)):
        c = g - n / 2 - shift
        r = c.pow(2).sum(0).sqrt() * (1 + 0.12 * torch.sin(2.5 * torch.atan2(c[1], c[2])) * torch.cos(2 * c[0] / n))
        out.append(torch.stack([r < n * 0.36 * scale, r < n * 0.22 * scale]))
    return out[0][None], out[1][None]


@pytest.mark.parametrize("convention", ["monai", "paper"])
@pytest.mark.parametrize("percentile", [95, 60, 99.5])
def test_percentile_from_limited_distances_equals_the_exact_one(monkeypatch, convention, percentile):
    """The k-d tree measures exactly only what lies above the sampled limit (``goal="quantile"``) and the percentile
    equals the dense EDT's, bit for bit (dyadic spacing), and MONAI's / SimpleITK's.  The ``"paper"`` median-like
    60th percentile lies among the zeros (the voxels inside the other mask): no limit, every value exact."""
    if not nearest.available():
        pytest.skip(NO_TREE)
    p, t = wavy_pair()
    sp = (1.0, 0.5, 2.0)
    kw = dict(include_background=True, percentile=percentile, convention=convention, spacing=sp)
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "sparse")
    with observe.engines() as seen:
        got = hausdorff_distance(p, t, **kw)
    expected = "exact" if (convention, percentile) == ("paper", 60) else "limited"
    assert seen.all("metric_distances") == ["sparse"] and seen.all("metric_quantile") == [expected]
    old = torch.get_num_threads()
    try:
        for threads in (1, 3):  # the early stops differ with the threads' ranges, the percentile does not
            torch.set_num_threads(threads)
            assert torch.equal(hausdorff_distance(p, t, **kw), got)
    finally:
        torch.set_num_threads(old)
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "dense")
    assert torch.equal(got, hausdorff_distance(p, t, **kw))
    if convention == "monai":
        ref = monai_metrics.compute_hausdorff_distance(p, t, percentile=percentile, spacing=sp,
                                                       include_background=True)
    else:
        ref = torch.tensor([[sitk_hd(p[0, c].numpy(), t[0, c].numpy(), sp, percentile) for c in range(2)]])
    torch.testing.assert_close(got, ref.float(), rtol=1e-5, atol=1e-5)


def sitk_hd(p, t, sp, q):
    """The paper's percentile Hausdorff distance of one pair: SimpleITK's clamped signed Maurer maps."""
    maps = []
    for m in (p, t):
        im = sitk.GetImageFromArray(m.astype(np.uint8))
        im.SetSpacing(tuple(float(x) for x in sp[::-1]))
        maps.append(sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(im, insideIsPositive=False,
                                                                        squaredDistance=False, useImageSpacing=True)))
    return max(np.percentile(np.maximum(maps[1][p], 0), q), np.percentile(np.maximum(maps[0][t], 0), q))


def test_percentile_measures_exactly_when_the_sampled_limit_is_misjudged(monkeypatch):
    """Where more values than the quantile's rank came out at or below the limit (the sample misjudged it; here a
    limit forced to +inf), every distance is measured again exactly, and the percentile is still exact."""
    if not nearest.available():
        pytest.skip(NO_TREE)
    p, t = wavy_pair()
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "sparse")
    ref = hausdorff_distance(p, t, include_background=True, percentile=95)
    real = nearest.segment_distances
    goals = []

    def misjudged(*args, **kwargs):
        goals.append(kwargs.get("goal", "distances"))
        out = real(*args, **kwargs)
        if kwargs.get("goal") == "quantile":
            kwargs["tau"].fill_(float("inf"))
        return out

    monkeypatch.setattr(nearest, "segment_distances", misjudged)
    with observe.engines() as seen:
        got = hausdorff_distance(p, t, include_background=True, percentile=95)
    assert seen.all("metric_quantile") == ["exact"] and goals == ["quantile", "distances"]
    assert torch.equal(got, ref)


def test_without_the_tree_library_the_dense_edt_answers(monkeypatch):
    if not nearest.available():
        pytest.skip(NO_TREE)
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "sparse")
    p, t = case(3)
    with observe.engines() as seen:
        ref = average_surface_distance(p, t, spacing=(1.5, 0.8, 1.1))
    assert seen.all("metric_distances") == ["sparse"]
    monkeypatch.setattr(nearest.host_library, "load", lambda: (None, "not built (test)"))
    with observe.engines() as seen:
        got = average_surface_distance(p, t, spacing=(1.5, 0.8, 1.1))
    assert seen.all("metric_distances") == ["dense"]  # the fallback ran, although "sparse" was asked for
    torch.testing.assert_close(got, ref, equal_nan=True, rtol=1e-6, atol=0)


def test_bad_distance_path(monkeypatch):
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "kdtree")
    p, t = case(2)
    with pytest.raises(ValueError, match="FASTGSL_METRIC_DISTANCES"):
        hausdorff_distance(p, t)
    assert metrics.DISTANCE_PATHS == ("auto", "dense", "sparse")
