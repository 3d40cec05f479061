"""Loading fastgsl's optional host libraries: plain C++ shared libraries opened with ctypes.

The host kernels (``kernels/edt_host.cpp`` for :mod:`fastgsl.ops.edt`, ``kernels/voxel_stats_host.cpp`` for
:mod:`fastgsl.ops.voxel_stats`, ``kernels/nearest_host.cpp`` for :mod:`fastgsl.ops.nearest`) use neither the Python
nor the torch C API, so one build works with any Python and torch version.  What makes each library (its sources,
flags and digest) is ``kernels/manifest.py``.  ``setup.py`` builds each as an optional extension
(``fastgsl/<stem>*.so``); when that did not happen (a source checkout, no compiler at install time)
:meth:`HostLibrary.load` compiles the same sources on first use into ``$FASTGSL_CACHE_DIR`` (default
``$XDG_CACHE_HOME/fastgsl`` or ``~/.cache/fastgsl``).

A built library whose compiled-in digest differs from the sources next to the package is stale: the sources are
compiled into the cache instead, and the stale library is used only when that compile fails.

Threads: the libraries split their work over ``torch.get_num_threads()`` threads.  When torch runs its own parallel
work on OpenMP (``torch.__config__.parallel_info()``: "ATen parallel backend: OpenMP", the default CPU build), each
library is given that runtime's ``GOMP_parallel`` and runs on the same thread team: torch's idle OpenMP workers spin
for a while after every parallel region, and threads of our own started then (the loss right after the network's
forward) would share the cores with them.  ``FASTGSL_OPENMP_TEAM=0`` keeps the libraries on their own std::threads.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable

from fastgsl.kernels import manifest

_PACKAGE_DIR = Path(__file__).resolve().parent
#: the kernel sources: the installed ``fastgsl.kernels`` (``kernels/`` of the checkout in an editable install)
KERNEL_DIR = Path(manifest.__file__).resolve().parent


def cache_dir() -> Path:
    return Path(os.environ.get("FASTGSL_CACHE_DIR")
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastgsl")


def warn_once(registry: set, key: str, msg: str, stacklevel: int = 3):
    """``warnings.warn(msg, RuntimeWarning)`` the first time ``key`` is seen in ``registry``."""
    if key not in registry:
        registry.add(key)
        warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel + 1)


_team = None


def openmp_team() -> tuple:
    """``(address of GOMP_parallel, path of its runtime)`` of the OpenMP runtime torch runs its parallel work on, or
    ``(None, reason)``; found once per process, in the libraries the process has already loaded (Linux)."""
    global _team
    if _team is None:
        _team = _find_openmp_team()
    return _team


def _find_openmp_team() -> tuple:
    if os.environ.get("FASTGSL_OPENMP_TEAM", "1") == "0":
        return None, "FASTGSL_OPENMP_TEAM=0"
    import torch  # the runtime to share is torch's, so torch is loaded before any library is

    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None, "torch's parallel backend is not OpenMP"
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split(None, 5)[-1].strip() for line in maps if "omp" in line.rsplit("/", 1)[-1]})
    except OSError as e:
        return None, f"cannot list the loaded libraries: {e}"
    for path in paths:
        name = os.path.basename(path)
        if not (name.startswith(("libgomp", "libiomp", "libomp")) and ".so" in name):
            continue
        try:  # RTLD_NOLOAD: the copy already in the process, never a second runtime
            runtime = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
            return ctypes.cast(runtime.GOMP_parallel, ctypes.c_void_p).value, path
        except (OSError, AttributeError):
            continue
    return None, "no OpenMP runtime with GOMP_parallel is loaded"


class HostLibrary:
    """One optional host library, as ``spec`` (a ``kernels/manifest.py`` entry) describes it.

    ``bind(lib)`` sets argtypes / restypes and raises ``OSError`` / ``AttributeError`` on an ABI mismatch.
    ``kernel_dir`` (tests) replaces the folder of the sources.
    """

    def __init__(self, spec: manifest.HostLibrarySpec, bind: Callable[[ctypes.CDLL], ctypes.CDLL],
                 kernel_dir: Path | None = None):
        self.spec, self.bind = spec, bind
        self.stem, self.main, self.sources = spec.stem, spec.main, tuple(spec.sources)
        self.hash_macro, self.prefix = spec.hash_macro, spec.prefix
        self._kernel_dir = Path(kernel_dir) if kernel_dir is not None else KERNEL_DIR
        self._lock = threading.Lock()
        self._result = None

    def kernel_dir(self) -> Path:
        return self._kernel_dir

    def digest(self, kdir: Path | None = None) -> str:
        return manifest.source_hash(kdir or self.kernel_dir(), self.sources)

    def open(self, path) -> ctypes.CDLL:
        """The library at ``path``, bound (``bind``) and handed torch's OpenMP team where it takes one."""
        lib = self.bind(ctypes.CDLL(str(path)))
        getattr(lib, f"{self.prefix}_source_hash").restype = ctypes.c_char_p
        if hasattr(lib, "fastgsl_host_set_team"):  # every library that includes kernels/host_parallel.h
            lib.fastgsl_host_set_team.argtypes = [ctypes.c_void_p]
            lib.fastgsl_host_set_team.restype = ctypes.c_int
            lib.fastgsl_host_set_team(openmp_team()[0])
        return lib

    def _built_hash(self, lib) -> str:
        return getattr(lib, f"{self.prefix}_source_hash")().decode()

    def compile(self, kdir: Path, digest: str) -> Path:
        """Compile ``main`` into the cache directory (once per digest and compiler command); returns the path."""
        cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
        if not cxx:
            raise OSError("no C++ compiler found (set CXX)")
        flags = [*manifest.CXX_FLAGS, "-shared", "-fPIC", f'-D{self.hash_macro}="{digest}"']
        key = hashlib.sha256((digest + " ".join([cxx] + flags)).encode()).hexdigest()[:16]
        cache = cache_dir()
        target = cache / f"{self.stem.lstrip('_')}_{key}.so"
        if target.exists():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        try:
            res = subprocess.run([cxx, *flags, "-o", tmp, str(kdir / self.main)], capture_output=True, text=True)
            if res.returncode != 0:
                raise OSError(f"compiling {self.main} failed: {res.stderr.strip()[-2000:]}")
            os.replace(tmp, target)  # atomic: concurrent processes never load a half-written file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def _load(self):
        kdir = self.kernel_dir()
        have_src = all((kdir / n).exists() for n in self.sources)
        digest = self.digest(kdir) if have_src else None
        errors, stale = [], []
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            p = _PACKAGE_DIR / f"{self.stem}{suffix}"
            if not p.exists():
                continue
            try:
                lib = self.open(p)
            except (OSError, AttributeError) as e:
                errors.append(f"{p}: {e}")
                continue
            if digest is None or self._built_hash(lib) == digest:
                return lib, str(p)
            stale.append((lib, str(p)))
        if have_src:
            try:
                p = self.compile(kdir, digest)
                return self.open(p), str(p)
            except (OSError, AttributeError, subprocess.SubprocessError) as e:
                errors.append(str(e))
        if stale:
            return stale[0]
        return None, "; ".join(errors) or "no built library and no kernel sources"

    def load(self):
        """``(library, path)`` or ``(None, reason)``; computed once per process (thread-safe).

        Order: the library built by setup.py if it matches the current sources; else the sources compiled on
        demand into the cache directory; else a stale built library (same ABI)."""
        with self._lock:
            if self._result is None:
                self._result = self._load()
            return self._result

    def reset(self):
        """Forget the loaded library (tests)."""
        with self._lock:
            self._result = None
