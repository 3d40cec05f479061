"""The host libraries on torch's OpenMP thread team (``kernels/host_parallel.h``, ``fastgsl/_native.py``).

Each library's parallel loops run on the runtime torch already runs its own work on, when torch's backend is
OpenMP, and on std::threads otherwise.  Either way the work is split the same way and every result is written to
its own slot, so the two give the same bits; the tests check that, and that the team path is the one that ran.
"""
from __future__ import annotations

import ctypes

import pytest
import torch

from fastgsl import _native
from fastgsl.metrics import average_surface_distance, hausdorff_distance
from fastgsl.ops import edt, nearest
from fastgsl.ops.voxel_stats import host as vs
from fastgsl.ops.voxel_stats.layout import K
from fastgsl.ops.voxel_stats.spec import StatSpec

LIBRARIES = {"stats": vs.host_library, "edt": edt.host_library, "nearest": nearest.host_library}
TEAM, WHERE = _native.openmp_team()
OPENMP = "parallel backend: OpenMP" in torch.__config__.parallel_info()
needs_team = pytest.mark.skipif(TEAM is None, reason=f"no OpenMP team to share: {WHERE}")
needs_threads = pytest.mark.skipif(torch.get_num_threads() < 2,
                                   reason="torch runs on one thread here, so no loop is split over threads")


def _lib(name):
    lib, where = LIBRARIES[name].load()
    if lib is None:
        pytest.skip(f"the host {name} library is unavailable: {where}")
    lib.fastgsl_host_team_runs.restype = ctypes.c_longlong
    return lib


def _workload():
    """The three libraries' work on one small case, each large enough to be split over two threads."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 4, 23, 29, 31, generator=g)
    labels = torch.randint(0, 4, (2, 23, 29, 31), generator=g)
    d = torch.randn(2, 4, 23, 29, 31, generator=g)
    spec = StatSpec("softmax", frozenset(range(K)))
    lib = _lib("stats")
    stats = vs._forward_native(lib, z, labels, d, None, spec)
    grad = vs._backward_native(lib, torch.randn(2, 4, K, generator=g), z, labels, d, None, spec)
    mask = torch.rand(2, 3, 33, 35, 37, generator=g) > 0.6
    dtm = edt.signed_dtm(mask, (0.8, 1.0, 1.3), spatial_dims=3)
    pred = torch.rand(2, 3, 33, 35, 37, generator=g) > 0.55
    hd = hausdorff_distance(pred, mask, percentile=95, spacing=(0.8, 1.0, 1.3))
    asd = average_surface_distance(pred, mask, spacing=(0.8, 1.0, 1.3))
    return stats, grad, dtm, hd, asd


def test_the_team_is_torchs_openmp_runtime():
    """With torch's default CPU build (OpenMP) the loader finds the runtime already loaded; otherwise it says why."""
    if OPENMP:
        assert TEAM is not None and "omp" in WHERE.rsplit("/", 1)[-1], WHERE
    else:
        assert TEAM is None and "not OpenMP" in WHERE


@needs_team
@needs_threads
def test_team_and_threads_give_the_same_bits():
    """Each library run on the OpenMP team (the loader's default here) and on its own std::threads: the team path
    runs in every library (its counter grows), the other does not, and the results are bit-identical."""
    libs = {name: _lib(name) for name in LIBRARIES}
    runs = {name: lib.fastgsl_host_team_runs() for name, lib in libs.items()}
    on_team = _workload()
    for name, lib in libs.items():
        assert lib.fastgsl_host_team_runs() > runs[name], f"the {name} library did not run on the team"
    try:
        for lib in libs.values():
            lib.fastgsl_host_set_team(None)
        runs = {name: lib.fastgsl_host_team_runs() for name, lib in libs.items()}
        on_threads = _workload()
        assert {name: lib.fastgsl_host_team_runs() for name, lib in libs.items()} == runs
    finally:
        for lib in libs.values():
            lib.fastgsl_host_set_team(TEAM)
    for a, b in zip(on_team, on_threads):
        assert torch.equal(a, b)
