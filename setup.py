"""Packaging for fastgsl.

The kernel sources live at the top level in ``kernels/`` (the design card's layout) but ship inside the package
as ``fastgsl.kernels``: a top-level package called ``kernels`` would shadow the unrelated PyPI project of that
name.  ``package_dir`` does the mapping, and setuptools' editable installs honour it through their path finder,
so ``import fastgsl.kernels`` works the same way in editable and normal installs.
"""
from setuptools import setup

setup(
    packages=["fastgsl", "fastgsl.losses", "fastgsl.ops", "fastgsl.kernels"],
    package_dir={"fastgsl": "fastgsl", "fastgsl.kernels": "kernels"},
    package_data={"fastgsl.kernels": ["*.cu", "*.cuh", "*.cpp", "*.h"]},
)
