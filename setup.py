"""Packaging for fastgsl.

The kernel sources live at the top level in ``kernels/`` (the design card's layout) but ship inside the package
as ``fastgsl.kernels``: a top-level package called ``kernels`` would shadow the unrelated PyPI project of that
name.  ``package_dir`` does the mapping, and setuptools' editable installs honour it through their path finder,
so ``import fastgsl.kernels`` works the same way in editable and normal installs.

The host build of the EDT kernel (``kernels/edt_host.cpp``, which includes ``kernels/edt.cu``) is compiled here
into ``fastgsl/_edt_host*.so``: a plain shared library loaded with ctypes (no Python or torch API, so it does not
depend on their versions).  It needs only a C++17 compiler, no CUDA.  If it cannot be built the package still
installs; ``fastgsl.edt`` then compiles the same sources on first use, or falls back to scipy with a warning.
"""
import hashlib
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_HERE = Path(__file__).resolve().parent


def _edt_source_hash() -> str:
    """Same digest as ``fastgsl.edt._source_hash``: lets the loader tell a stale library from a current one."""
    h = hashlib.sha256()
    for name in ("edt.cu", "edt_host.cpp"):
        h.update((_HERE / "kernels" / name).read_bytes())
    return h.hexdigest()[:16]


class _OptionalBuildExt(build_ext):
    """Never fail the installation because the optional host EDT library did not build."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # no compiler at all, unsupported platform
            self.warn(f"fastgsl: skipping the host EDT library ({e}); fastgsl.edt will compile it on first use "
                      f"or fall back to scipy")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            self.warn(f"fastgsl: building {ext.name} failed ({e}); fastgsl.edt will compile it on first use or "
                      f"fall back to scipy")


setup(
    packages=["fastgsl", "fastgsl.losses", "fastgsl.ops", "fastgsl.train", "fastgsl.kernels"],
    package_dir={"fastgsl": "fastgsl", "fastgsl.kernels": "kernels"},
    package_data={"fastgsl.kernels": ["*.cu", "*.cuh", "*.cpp", "*.h"], "fastgsl.train": ["README.md"]},
    ext_modules=[
        Extension(
            "fastgsl._edt_host",
            sources=["kernels/edt_host.cpp"],
            depends=["kernels/edt.cu"],
            include_dirs=["kernels"],
            define_macros=[("FASTGSL_EDT_SOURCE_HASH", f'"{_edt_source_hash()}"')],
            language="c++",
            extra_compile_args=["-O3", "-std=c++17", "-ffp-contract=off", "-pthread"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": _OptionalBuildExt},
)
