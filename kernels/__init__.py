"""fastgsl's kernel sources (installed as ``fastgsl.kernels``): the CUDA and C++ files, the generated layout
header, and ``manifest.py``, the build manifest.  Nothing here imports the package."""
