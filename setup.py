"""Packaging for fastgsl.

The kernel sources live at the top level in ``kernels/`` (the design card's layout) but ship inside the package
as ``fastgsl.kernels``: a top-level package called ``kernels`` would shadow the unrelated PyPI project of that
name.  ``package_dir`` does the mapping, and setuptools' editable installs honour it through their path finder,
so ``import fastgsl.kernels`` works the same way in editable and normal installs.

The host build of the EDT kernel (``kernels/edt_host.cpp``, which includes ``kernels/edt.cu``) is compiled here
into ``fastgsl/_edt_host*.so``: a plain shared library loaded with ctypes (no Python or torch API, so it does not
depend on their versions).  It needs only a C++17 compiler, no CUDA.  If it cannot be built the package still
installs; ``fastgsl.edt`` then compiles the same sources on first use, or falls back to scipy with a warning.
The host statistics / gradient passes (``kernels/voxel_stats_host.cpp`` -> ``fastgsl/_stats_host*.so``) are built
the same way, optional in the same way (``fastgsl.ops.voxel_stats`` then compiles them on first use, or runs the
chunked PyTorch passes), and so is the k-d tree of the surface metrics (``kernels/nearest_host.cpp`` ->
``fastgsl/_nearest_host*.so``; without it ``fastgsl.metrics`` uses the dense EDT).  All are loaded through
``fastgsl._native``.
"""
import hashlib
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_HERE = Path(__file__).resolve().parent


def _source_hash(*names: str) -> str:
    """Same digest as ``fastgsl._native.source_hash``: lets the loader tell a stale library from a current one."""
    h = hashlib.sha256()
    for name in names:
        h.update((_HERE / "kernels" / name).read_bytes())
    return h.hexdigest()[:16]


_EDT_SOURCES = ("edt.cu", "edt_host.cpp", "host_parallel.h")  # as fastgsl.edt._HOST_SOURCES
_STATS_SOURCES = ("voxel_stats_host.cpp", "host_parallel.h")  # as fastgsl.ops.voxel_stats.host_library
_NEAREST_SOURCES = ("nearest_host.cpp", "host_parallel.h")  # as fastgsl.nearest._SOURCES
_CXX_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=off", "-pthread"]  # as fastgsl._native.CXX_FLAGS


def _host_library(name: str, main: str, sources, hash_macro: str) -> Extension:
    """A ctypes-loaded host library: ``main`` is compiled and #includes the rest of ``sources``; all are hashed."""
    return Extension(
        name,
        sources=[f"kernels/{main}"],
        depends=[f"kernels/{n}" for n in sources if n != main],
        include_dirs=["kernels"],
        define_macros=[(hash_macro, f'"{_source_hash(*sources)}"')],
        language="c++",
        extra_compile_args=_CXX_FLAGS,
        extra_link_args=["-pthread"],
        optional=True,
    )


class _OptionalBuildExt(build_ext):
    """Never fail the installation because an optional host library did not build."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler at all, unsupported platform
            self.warn(f"fastgsl: skipping the host libraries ({e}); they are compiled on first use, or the "
                      f"package falls back to scipy / PyTorch")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            self.warn(f"fastgsl: building {ext.name} failed ({e}); it is compiled on first use, or the package "
                      f"falls back to scipy / PyTorch")


setup(
    packages=["fastgsl", "fastgsl.losses", "fastgsl.ops", "fastgsl.train", "fastgsl.nnunet", "fastgsl.kernels"],
    package_dir={"fastgsl": "fastgsl", "fastgsl.kernels": "kernels"},
    package_data={"fastgsl.kernels": ["*.cu", "*.cuh", "*.cpp", "*.h"], "fastgsl.train": ["README.md"],
                  "fastgsl.nnunet": ["trainers/*.py"]},
    ext_modules=[
        _host_library("fastgsl._edt_host", "edt_host.cpp", _EDT_SOURCES, "FASTGSL_EDT_SOURCE_HASH"),
        _host_library("fastgsl._stats_host", "voxel_stats_host.cpp", _STATS_SOURCES, "FASTGSL_STATS_SOURCE_HASH"),
        _host_library("fastgsl._nearest_host", "nearest_host.cpp", _NEAREST_SOURCES,
                      "FASTGSL_NEAREST_SOURCE_HASH"),
    ],
    cmdclass={"build_ext": _OptionalBuildExt},
)
