"""Build manifest of fastgsl's host libraries: which kernel sources make each one, and how they are compiled.

The one source of truth for both builds of each library: ``setup.py`` reads this file by path (before anything
is installed, so it imports only the standard library), and ``fastgsl._native`` reads it as
``fastgsl.kernels.manifest`` when it compiles a library on first use and when it tells a stale build from a
current one.

Every library exports ``<prefix>_source_hash()``: :func:`source_hash` of its :attr:`HostLibrarySpec.sources`,
compiled in as ``-D<hash_macro>="..."``.  ``sources`` must therefore name every file the main translation unit
includes from this folder; ``tests/test_host_build.py`` checks that against the ``#include`` lines.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

# -fno-wrapv: setup.py's compiler line starts with Python's own CFLAGS, which include -fwrapv; signed overflow then
# has to wrap, which costs the loops of the statistics passes about 8% (measured against the same source built
# without it).  No kernel relies on wrapping signed arithmetic.
#: flags of every host build; no FMA contraction, so that results round like the GPU builds (``--fmad=false``)
CXX_FLAGS = ("-O3", "-std=c++17", "-ffp-contract=off", "-fno-wrapv", "-pthread")
LINK_FLAGS = ("-pthread",)


class HostLibrarySpec(NamedTuple):
    """One ctypes-loaded host library.

    ``stem``: file stem of the build (``_edt_host`` -> ``fastgsl/_edt_host*.so``); ``main``: the translation
    unit; ``sources``: every file whose bytes make the digest, ``main`` included; ``hash_macro``: the macro that
    carries the digest; ``prefix``: the exported symbol prefix (``<prefix>_source_hash``)."""

    stem: str
    main: str
    sources: tuple
    hash_macro: str
    prefix: str

    @property
    def module(self) -> str:
        """The extension's dotted name for setuptools."""
        return f"fastgsl.{self.stem}"


EDT = HostLibrarySpec("_edt_host", "edt_host.cpp",
                      ("edt_kernel.cu", "edt_host.cpp", "host_memory.h", "host_parallel.h"),
                      "FASTGSL_EDT_SOURCE_HASH", "fastgsl_edt")
STATS = HostLibrarySpec("_stats_host", "voxel_stats_host.cpp",
                        ("voxel_stats_host.cpp", "voxel_stats_layout.h", "host_memory.h", "host_parallel.h"),
                        "FASTGSL_STATS_SOURCE_HASH", "fastgsl_stats")
NEAREST = HostLibrarySpec("_nearest_host", "nearest_host.cpp", ("nearest_host.cpp", "host_parallel.h", "segment_select.h", "surface_voxels.h"),
                          "FASTGSL_NEAREST_SOURCE_HASH", "fastgsl_nearest")
LIBRARIES = (EDT, STATS, NEAREST)


def source_hash(kernel_dir, names) -> str:
    """sha256 prefix of the files ``names`` in ``kernel_dir``, in that order."""
    h = hashlib.sha256()
    for name in names:
        h.update((Path(kernel_dir) / name).read_bytes())
    return h.hexdigest()[:16]
