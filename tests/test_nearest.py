"""fastgsl.ops.nearest (the k-d tree of kernels/nearest_host.cpp) against a brute-force float64 minimum computed with
the same operations, scipy's cKDTree, and the dense EDT (fastgsl.ops.edt.distance_to_sites)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from fastgsl.metrics.morphology import edges_into, label_contour_into, maurer_contour_into
from fastgsl.ops import nearest
from fastgsl.ops.edt import distance_to_sites

pytestmark = pytest.mark.skipif(not nearest.available(),
                                reason="the host nearest-site library could neither be found nor compiled here")


def brute(q_local, s_local, shape, sp):
    """float32 distances, the squared distance summed from the last axis down like the kernel."""
    if len(s_local) == 0:
        return np.full(len(q_local), np.inf, np.float32)
    qc = np.stack(np.unravel_index(q_local, shape), 1).astype(np.int64)
    sc = np.stack(np.unravel_index(s_local, shape), 1).astype(np.int64)
    acc = None
    for k in range(len(shape) - 1, -1, -1):
        x = (qc[:, None, k] - sc[None, :, k]).astype(np.float64) * sp[k]
        acc = x * x if acc is None else acc + x * x
    return np.sqrt(acc.min(1)).astype(np.float32)


def random_segments(rng, S, shape, q_frac, s_frac, empty_sites=()):
    V = math.prod(shape)
    q, s = [], []
    for seg in range(S):
        qm = rng.random(V) < q_frac
        sm = rng.random(V) < s_frac
        if seg in empty_sites:
            sm[:] = False
        q.append(np.nonzero(qm)[0] + seg * V)
        s.append(np.nonzero(sm)[0] + seg * V)
    return np.concatenate(q), np.concatenate(s)


@pytest.mark.parametrize("shape", [(17, 23), (13, 11, 15), (1, 9, 31)])
def test_matches_brute_force_exactly(shape):
    rng = np.random.default_rng(len(shape))
    S, nd = 5, len(shape)
    q, s = random_segments(rng, S, shape, 0.08, 0.03, empty_sites=(3,))
    site_of = np.array([1, 0, 2, 4, 3])  # crossed, self and an empty site set (segment 3)
    sp = rng.uniform(0.3, 2.5, (S, nd))
    out = nearest.segment_distances(torch.from_numpy(q), torch.from_numpy(s), torch.from_numpy(site_of), shape,
                                    torch.from_numpy(sp))
    V = math.prod(shape)
    seg_q, seg_s = q // V, s // V
    for seg in range(S):
        k = site_of[seg]
        ref = brute(q[seg_q == seg] - seg * V, s[seg_s == k] - k * V, shape, sp[seg])
        np.testing.assert_array_equal(out.numpy()[seg_q == seg], ref)
    assert torch.isinf(out[torch.from_numpy(seg_q == 4)]).all()  # segment 4 reads the empty site set 3


@pytest.mark.parametrize("nd", [2, 3])
def test_deep_trees_match_brute_force_exactly(nd):
    """Site sets of thousands of points (trees many leaves deep, leaves of odd and even sizes) on anisotropic
    spacing: the exact brute-force minimum, bit for bit."""
    rng = np.random.default_rng(21 + nd)
    shape = (190, 197) if nd == 2 else (37, 41, 45)
    q, s = random_segments(rng, 2, shape, 0.03, 0.04)
    sp = np.array([[0.8, 1.7, 1.1][:nd], [1.3, 0.6, 0.9][:nd]])
    out = nearest.segment_distances(torch.from_numpy(q), torch.from_numpy(s), torch.tensor([1, 0]), shape,
                                    torch.from_numpy(sp))
    V = math.prod(shape)
    assert (s // V == 0).sum() > 1000
    for g in range(2):
        ref = brute(q[q // V == g] - g * V, s[s // V == 1 - g] - (1 - g) * V, shape, sp[g])
        np.testing.assert_array_equal(out.numpy()[q // V == g], ref)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("goal", ["distances", "maximum"])
def test_queries_that_are_sites(goal, threads):
    """Queries that are themselves sites (where two surfaces meet) are at exactly 0, the others at their brute-force
    distance, with the site segments crossed as the metrics use them."""
    rng = np.random.default_rng(11)
    shape, S = (13, 11, 15), 2
    V = math.prod(shape)
    q, s = random_segments(rng, S, shape, 0.1, 0.02)
    shared = q[rng.random(q.size) < 0.3]
    s = np.unique(np.concatenate([s, np.where(shared < V, shared + V, shared - V)]))  # in the other segment
    site_of = torch.tensor([1, 0])
    sp = np.array([[0.8, 1.3, 0.7]] * S)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = nearest.segment_distances(torch.from_numpy(q), torch.from_numpy(s), site_of, shape,
                                        torch.from_numpy(sp), goal=goal).numpy()
    finally:
        torch.set_num_threads(old)
    ref = np.concatenate([brute(q[q // V == g] - g * V, s[s // V == 1 - g] - (1 - g) * V, shape, sp[g])
                          for g in range(S)])
    assert (ref == 0).sum() >= shared.size
    if goal == "distances":
        np.testing.assert_array_equal(out, ref)
    else:
        assert (out[ref == 0] == 0).all()
        for g in range(S):
            assert out[q // V == g].max() == ref[q // V == g].max()


@pytest.mark.parametrize("nd", [2, 3])
def test_matches_scipy_ckdtree(nd):
    rng = np.random.default_rng(7 + nd)
    shape = (41, 37) if nd == 2 else (21, 19, 23)
    sp = (0.8, 1.7) if nd == 2 else (1.5, 0.8, 1.1)
    q, s = random_segments(rng, 1, shape, 0.05, 0.01)
    out = nearest.segment_distances(torch.from_numpy(q), torch.from_numpy(s), torch.zeros(1, dtype=torch.int64),
                                    shape, torch.tensor([sp], dtype=torch.float64))
    qc = np.stack(np.unravel_index(q, shape), 1) * np.asarray(sp)
    sc = np.stack(np.unravel_index(s, shape), 1) * np.asarray(sp)
    ref = cKDTree(sc).query(qc)[0]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 2.0, 1.0), (1.5, 0.8, 1.1)])
def test_equals_dense_edt(spacing):
    """Surface-like sites (the shell of random blobs, touching the border) and one far single voxel."""
    rng = np.random.default_rng(3)
    shape = (15, 17, 19)
    f = torch.from_numpy(rng.standard_normal((2,) + shape)).float()
    blob = torch.nn.functional.avg_pool3d(f[:, None], 5, 1, 2)[:, 0] > 0.1
    shell = blob & ~(-torch.nn.functional.max_pool3d(-blob.float()[:, None], 3, 1, 1)[:, 0] > 0.5)
    shell[1] = False
    shell[1, 0, 0, 0] = True
    dense = distance_to_sites(shell, spacing, spatial_dims=3)
    queries = torch.nonzero(torch.rand((2,) + shape, generator=torch.Generator().manual_seed(0)).view(-1) < 0.2)
    queries = queries.flatten()
    sites = torch.nonzero(shell.view(-1)).flatten()
    out = nearest.segment_distances(queries, sites, torch.tensor([0, 1]), shape,
                                    torch.tensor([spacing, spacing], dtype=torch.float64))
    ref = dense.view(-1)[queries]
    if all(math.log2(s).is_integer() for s in spacing):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)  # every operation exact
    else:
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=0)


def test_deterministic_across_threads():
    rng = np.random.default_rng(11)
    shape = (23, 21, 25)
    q, s = random_segments(rng, 3, shape, 0.1, 0.02)
    args = (torch.from_numpy(q), torch.from_numpy(s), torch.tensor([2, 0, 1]), shape,
            torch.tensor([(1.2, 0.7, 2.1)] * 3, dtype=torch.float64))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nearest.segment_distances(*args)
        torch.set_num_threads(2)
        two = nearest.segment_distances(*args)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)
    assert torch.equal(two, nearest.segment_distances(*args))


def test_degenerate_sets():
    shape = (5, 6, 7)
    V = math.prod(shape)
    # one site, queries including the site itself and the far corner; a segment with no query at all
    q = torch.tensor([0, 3, V - 1, 2 * V + 5])
    s = torch.tensor([0, 2 * V + 5])
    out = nearest.segment_distances(q, s, torch.tensor([0, 1, 2]), shape, torch.ones(3, 3, dtype=torch.float64))
    assert out.tolist() == [0.0, 3.0, pytest.approx(math.sqrt(4 ** 2 + 5 ** 2 + 6 ** 2)), 0.0]
    empty = nearest.segment_distances(torch.zeros(0, dtype=torch.int64), s, torch.tensor([0, 1, 2]), shape,
                                      torch.ones(3, 3, dtype=torch.float64))
    assert empty.numel() == 0


def test_bad_shape():
    with pytest.raises(ValueError, match="2-D or 3-D"):
        nearest.segment_distances(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), (2, 2, 2, 2),
                                  torch.ones(1, 4, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(7, 9, 11), (13, 17), (1, 5, 6), (20, 1, 3)])
def test_surface_voxels_equal_the_tensor_morphology(shape):
    """The native surface lists (edges, contours, Maurer sites, voxels outside the other mask) are the flat indices
    of the tensor morphology of fastgsl.metrics.morphology, on strided inputs (the background channel sliced
    off), at every density from empty to full, with the per-mask counts and the bounding box."""
    nd = len(shape)
    g = torch.Generator().manual_seed(3)
    for dens in (0.0, 0.3, 0.7, 0.95, 1.0):
        pf = torch.rand((2, 4) + shape, generator=g) < dens
        tf = torch.rand((2, 4) + shape, generator=g) < dens
        p, t = pf[:, 1:], tf[:, 1:]
        lists, per_volume, inside, box = nearest.surface_voxels(p, t, nd, ["edge", "contour", "maurer"])
        assert inside is None
        every = []
        for m, fn in enumerate((edges_into, label_contour_into, maurer_contour_into)):
            ref = torch.empty((2,) + tuple(p.shape), dtype=torch.bool)
            fn(p, nd, ref[0])
            fn(t, nd, ref[1])
            assert torch.equal(lists[m], torch.nonzero(ref.view(-1)).flatten())
            assert torch.equal(per_volume[m], ref.flatten(3).sum(-1).flatten())
            every.append(ref.flatten(0, 2))
        anyv = torch.stack(every).any(0).any(0)
        assert (box is None) == (not bool(anyv.any()))
        if box is not None:
            for ax, (lo, hi) in enumerate(box):
                proj = anyv.movedim(ax, 0).flatten(1).any(1)
                idx = torch.nonzero(proj).flatten()
                assert (lo, hi) == (int(idx[0]), int(idx[-1]))
        lists, per_volume, inside, _ = nearest.surface_voxels(p, t, nd, ["outside"])
        ref = torch.stack([p & ~t, t & ~p])
        assert torch.equal(lists[0], torch.nonzero(ref.reshape(-1)).flatten())
        assert torch.equal(inside, (p & t).reshape(p.shape[0] * p.shape[1], -1).sum(1).repeat(2))


@pytest.mark.parametrize("shape", [(7, 9, 11), (13, 17), (1, 5, 6), (4, 1, 9)])
def test_surface_modes_alone_equal_them_together(shape):
    """Contour and Maurer sites asked for in one call share one pass over the face rows (the "paper" convention's
    queries and sites); asked for alone, or with another mode between them, each has its own pass: the lists,
    counts and boxes agree, at every density, on strided inputs."""
    nd = len(shape)
    g = torch.Generator().manual_seed(5)
    for dens in (0.2, 0.6, 0.9, 1.0):
        p = (torch.rand((2, 3) + shape, generator=g) < dens)[:, 1:]
        t = (torch.rand((2, 3) + shape, generator=g) < dens)[:, 1:]
        alone = {m: nearest.surface_voxels(p, t, nd, [m]) for m in ("contour", "maurer", "edge")}
        for modes in (["contour", "maurer"], ["maurer", "edge", "contour"]):
            lists, per_volume, _, box = nearest.surface_voxels(p, t, nd, modes)
            for k, m in enumerate(modes):
                ref = alone[m]
                assert torch.equal(lists[k], ref[0][0])
                assert torch.equal(per_volume[k], ref[1][0])
            boxes = [alone[m][3] for m in modes if alone[m][3] is not None]
            if boxes:
                assert box == [(min(b[ax][0] for b in boxes), max(b[ax][1] for b in boxes)) for ax in range(nd)]
            else:
                assert box is None


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(29, 31), (13, 11, 15)])
def test_goals_keep_their_reduction_exact(shape, threads):
    """``goal="maximum"``: each segment's maximum equals that of the exact distances (the other values may be
    lower); ``goal="within"``: ``value <= tau`` equals the exact test, with tolerances 0, between distances and
    equal to one (the float32 boundary); for any thread count."""
    rng = np.random.default_rng(7)
    S, nd = 4, len(shape)
    q, s = random_segments(rng, S, shape, 0.2, 0.02, empty_sites=(2,))
    site_of = torch.tensor([1, 0, 2, 3])
    sp = torch.from_numpy(rng.uniform(0.4, 2.0, (S, nd)))
    q, s = torch.from_numpy(q), torch.from_numpy(s)
    V = math.prod(shape)
    seg = q // V
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        exact = nearest.segment_distances(q, s, site_of, shape, sp)
        top = nearest.segment_distances(q, s, site_of, shape, sp, goal="maximum")
        some = exact[seg == 0]
        paths = set()
        for tau in (0.0, float(some.median()), float(some.min()), 1.5, 40.0):
            taus = torch.tensor([tau, tau * 0.5, 1.0, tau], dtype=torch.float32)
            paths.update(nearest.within_rows(shape, sp[k].tolist(), float(taus[k])) is None for k in range(S))
            near = nearest.segment_distances(q, s, site_of, shape, sp, goal="within", tau=taus)
            assert torch.equal(near <= taus[seg], exact <= taus[seg])
            hit = torch.isfinite(near)  # the distance of a real site within tau: no nearer than the nearest
            assert (near[hit] >= exact[hit]).all() and (near[hit] <= taus[seg][hit]).all()
        # small tolerances scan stencil rows; the largest needs too many rows and takes the k-d tree
        assert paths == {False, True}
    finally:
        torch.set_num_threads(old)
    for k in range(S):
        assert torch.equal(top[seg == k].max(), exact[seg == k].max())
        assert (top[seg == k] <= exact[seg == k].max()).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_quantile_goal_keeps_the_order_statistics_from_the_rank_on(threads):
    """``goal="quantile"``: the values above the reported limit are exact, those at or below it came from sites
    within it, and where no more than ``rank`` fall at or below it the order statistics from ``rank`` on equal
    the exact ones; a negative rank or a small segment gets no limit (-1) and exact values."""
    rng = np.random.default_rng(4)
    shape = (31, 29, 33)
    S = 4
    q, s = random_segments(rng, S, shape, 0.12, 0.004)
    q, s = torch.from_numpy(q), torch.from_numpy(s)
    V = math.prod(shape)
    seg = q // V
    site_of = torch.tensor([1, 0, 3, 2])
    sp = torch.tensor([(1.2, 0.7, 2.1)] * S, dtype=torch.float64)
    n = torch.bincount(seg, minlength=S)
    rank = ((n - 1).double() * torch.tensor([0.95, 0.5, 0.99, 0.95], dtype=torch.float64)).floor().long()
    rank[3] = -1
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        exact = nearest.segment_distances(q, s, site_of, shape, sp)
        limit = torch.empty(S, dtype=torch.float32)
        got = nearest.segment_distances(q, s, site_of, shape, sp, goal="quantile", tau=limit, rank=rank)
    finally:
        torch.set_num_threads(old)
    assert (limit[:3] >= 0).all() and limit[3] == -1
    for k in range(S):
        g, e, T = got[seg == k], exact[seg == k], limit[k]
        if T < 0:
            assert torch.equal(g, e)
            continue
        assert torch.equal(g[e > T], e[e > T]) and (g[e <= T] <= T).all() and (g[e <= T] >= e[e <= T]).all()
        assert int((g <= T).sum()) <= rank[k]  # the sample's limit lies below the rank-th value here
        assert torch.equal(g.sort().values[rank[k]:], e.sort().values[rank[k]:])


def test_portable_search_gives_the_sse2_bits(tmp_path, monkeypatch):
    """The lane-by-lane search that builds without SSE2 run (``-DFASTGSL_NEAREST_SCALAR`` builds it here) gives the
    same bits as the SSE2 one (the default build on x86-64), for every metric and both conventions on the k-d tree
    path."""
    import ctypes
    import shutil
    import subprocess

    from fastgsl import metrics
    from fastgsl.kernels import manifest

    lib, where = nearest.host_library.load()
    if lib is None:
        pytest.skip(f"the nearest-site host library is unavailable: {where}")
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler on this machine to build the portable variant")
    kdir = nearest.host_library.kernel_dir()
    out = tmp_path / "nearest_scalar.so"
    spec = manifest.NEAREST
    digest = manifest.source_hash(kdir, spec.sources)
    res = subprocess.run([cxx, *manifest.CXX_FLAGS, "-shared", "-fPIC", "-DFASTGSL_NEAREST_SCALAR",
                          f'-D{spec.hash_macro}="{digest}"', "-o", str(out), str(kdir / spec.main)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    scalar = nearest._bind(ctypes.CDLL(str(out)))

    g = torch.Generator().manual_seed(5)
    noise = torch.rand(2, 1, 23, 19, 17, generator=g)
    target = (noise > 0.55).long() + (noise > 0.8).long()            # 3 labels, ragged surfaces
    pred = torch.roll(target, shifts=(2, -1, 1), dims=(2, 3, 4))
    pred[1, 0, :4] = 0
    kw = dict(spacing=(0.8, 1.1, 1.7))
    monkeypatch.setenv("FASTGSL_METRIC_DISTANCES", "sparse")

    def every_metric():
        outs = []
        for conv in ("monai", "paper"):
            outs.append(metrics.hausdorff_distance(pred, target, 3, convention=conv, **kw))
            outs.append(metrics.hausdorff_distance(pred, target, 3, percentile=95, convention=conv, **kw))
            outs.append(metrics.average_surface_distance(pred, target, 3, convention=conv, **kw))
            outs.append(metrics.surface_dice(pred, target, 1.5, 3, convention=conv, **kw))
        return outs

    sse2 = every_metric()
    monkeypatch.setattr(nearest.host_library, "_result", (scalar, str(out)))
    portable = every_metric()
    for a, b in zip(sse2, portable):
        assert torch.equal(a, b)
    assert all(torch.isfinite(a).any() for a in sse2)  # the comparison saw real distances, not only NaN
