"""Packaging for fastgsl.

The kernel sources live at the top level in ``kernels/`` but ship inside the package as ``fastgsl.kernels``: a
top-level package called ``kernels`` would shadow the unrelated PyPI project of that name.  ``package_dir`` does
the mapping, and setuptools' editable installs honour it through their path finder, so ``import fastgsl.kernels``
works the same way in editable and normal installs.

The host libraries (the EDT, the statistics passes, the k-d tree of the surface metrics) are plain C++ shared
libraries loaded with ctypes (no Python or torch API, so they do not depend on their versions); what makes each
one is ``kernels/manifest.py``, which this file reads by path because nothing is installed yet when it runs.
Each is optional: if it cannot be built the package still installs, and ``fastgsl._native`` compiles the same
sources on first use (or the package falls back to scipy / PyTorch with a warning).
"""
import importlib.util
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

_HERE = Path(__file__).resolve().parent


def _manifest():
    spec = importlib.util.spec_from_file_location("_fastgsl_build_manifest", _HERE / "kernels" / "manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def host_extensions():
    """One optional extension per ``kernels/manifest.py`` entry; its digest is compiled in as ``hash_macro``."""
    m = _manifest()
    return [
        Extension(
            lib.module,
            sources=[f"kernels/{lib.main}"],
            depends=[f"kernels/{n}" for n in lib.sources if n != lib.main],
            include_dirs=["kernels"],
            define_macros=[(lib.hash_macro, f'"{m.source_hash(_HERE / "kernels", lib.sources)}"')],
            language="c++",
            extra_compile_args=list(m.CXX_FLAGS),
            extra_link_args=list(m.LINK_FLAGS),
            optional=True,
        )
        for lib in m.LIBRARIES
    ]


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


if __name__ == "__main__":
    setup(
        packages=find_packages(include=["fastgsl", "fastgsl.*"]) + ["fastgsl.kernels"],
        package_dir={"fastgsl": "fastgsl", "fastgsl.kernels": "kernels"},
        package_data={"fastgsl.kernels": ["*.cu", "*.cuh", "*.cpp", "*.h"], "fastgsl.train": ["README.md"],
                      "fastgsl.nnunet": ["trainers/*.py"]},
        ext_modules=host_extensions(),
        cmdclass={"build_ext": _OptionalBuildExt},
    )
