"""Two or more builds of ``kernels/voxel_stats_host.cpp`` timed against each other in one process.

How the per-voxel figures of the README's "What this version changed" lists are measured: build each variant of the
source into its own library, then

    python -m benchmarks.ab_stats_builds old.so new.so [more.so ...]

calls the libraries' statistics pass and then their gradient pass in turns, ``FASTGSL_AB_ROUNDS`` times (default
9), on the loss benchmark's workload (fp32 logits 2x4x96^3, int64 labels, a given DTM, the stats of Dice-CE +
GSL), and prints each library's best and median ns per voxel and whether all give the same bits.  Taking them in
turns keeps a slow spell of a shared machine from landing on one of them only.  ``FASTGSL_AB_THREADS`` (default
2) sets the threads, ``FASTGSL_AB_SIZE`` (default 96) the edge of the volume.

A variant is compiled like the loader does it, e.g. from a copy of ``kernels/`` in ``/tmp/v``::

    g++ -O3 -std=c++17 -ffp-contract=off -fno-wrapv -pthread -shared -fPIC \\
        -DFASTGSL_STATS_SOURCE_HASH='"v"' /tmp/v/voxel_stats_host.cpp -o /tmp/v/lib.so
"""
from __future__ import annotations

import os
import sys
import time

import torch

from fastgsl.ops.voxel_stats import host
from fastgsl.ops.voxel_stats.layout import (ACT_CODE, CE, D2, I, K, LOGIT_DTYPES, P_STATS, SP2, ST2, SURF,
                                            TARGET_DTYPES, mask_of)

NEEDS = frozenset({I, SP2, ST2, CE, SURF, D2})  # Dice-CE (squared) + GSL, as benchmarks/benchmark_losses.py


def main(paths):
    if len(paths) < 2:
        raise SystemExit("usage: python -m benchmarks.ab_stats_builds LIB.so LIB.so [LIB.so ...]")
    # bound like the loader binds its own build (ABI and layout checked), on torch's OpenMP team
    libs = [host.host_library.open(p) for p in paths]
    threads = int(os.environ.get("FASTGSL_AB_THREADS", "2"))
    size = int(os.environ.get("FASTGSL_AB_SIZE", "96"))
    rounds = int(os.environ.get("FASTGSL_AB_ROUNDS", "9"))
    B, C, N = 2, 4, size ** 3
    g = torch.Generator().manual_seed(0)
    z, d = torch.randn(B, C, N, generator=g), torch.randn(B, C, N, generator=g) * 10
    t = torch.randint(0, C, (B, N), generator=g)
    gs = torch.randn(B, C, K, generator=g)
    outs = [torch.zeros(B, C, K) for _ in libs]
    grads = [torch.empty(B, C, N) for _ in libs]
    zk, tk, act = LOGIT_DTYPES.index("float32"), TARGET_DTYPES.index("int64"), ACT_CODE["softmax"]
    fwd_mask, bwd_mask = mask_of(NEEDS), mask_of(NEEDS & P_STATS)

    def forward(k):
        return libs[k].fastgsl_stats_forward(z.data_ptr(), zk, t.data_ptr(), tk, d.data_ptr(), None,
                                             outs[k].data_ptr(), B, C, N, act, fwd_mask, 0, threads, 0, None)

    def backward(k):
        return libs[k].fastgsl_stats_backward(gs.data_ptr(), z.data_ptr(), zk, t.data_ptr(), tk, d.data_ptr(), None,
                                              grads[k].data_ptr(), B, C, N, act, bwd_mask, 0, threads, 0)

    print(f"{B}x{C}x{size}^3, {threads} threads, {rounds} rounds in turns; ns per voxel, best (median)")
    for name, call in (("forward", forward), ("backward", backward)):
        for k in range(len(libs)):
            if call(k) != 0:
                raise SystemExit(f"{paths[k]}: the {name} pass failed")
        times = [[] for _ in libs]
        for _ in range(rounds):
            for k in range(len(libs)):
                t0 = time.perf_counter()
                call(k)
                times[k].append(time.perf_counter() - t0)
        cells = [f"{p}: {min(ts) * 1e9 / (B * N):.2f} ({sorted(ts)[rounds // 2] * 1e9 / (B * N):.2f})"
                 for p, ts in zip(paths, times)]
        print(f"{name:8s} " + "   ".join(cells))
    print("same bits:", "stats", all(torch.equal(outs[0], o) for o in outs),
          "gradient", all(torch.equal(grads[0], o) for o in grads))


if __name__ == "__main__":
    main(sys.argv[1:])
