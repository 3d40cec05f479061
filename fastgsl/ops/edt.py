"""Exact Euclidean distance transform: the low-level engine under ``fastgsl.dtm`` and ``fastgsl.metrics``.

Contract (other modules rely on it):

``distance_to_sites(sites, spacing=None, *, spatial_dims, out=None)``
    ``sites`` is a bool tensor ``(..., *spatial)``; returns float32 of the same shape on the same device, the
    Euclidean distance (in physical units, voxel centre to voxel centre) from every voxel to the nearest True
    voxel of its own batch item; 0 at the sites; ``+inf`` everywhere in an item with no site.  ``out``: a
    contiguous float32 tensor of as many elements, on the same device, to write the result into.

Batched signed maps (used by :mod:`fastgsl.dtm`, which resolves the ``fill=`` policies):

``signed_dtm(mask, spacing=None, *, spatial_dims, convention="itk", fill_value=0.0)``
    DTM of every mask in ``(..., *spatial)`` (nonzero = object); float32, same shape and device.
``labels_dtm(labels, num_classes, spacing=None, *, convention="itk", fill_value=0.0)``
    ``(B, *spatial)`` integer labels -> ``(B, C, *spatial)``; channel ``c`` is the DTM of ``labels == c``, the
    label test being done inside the kernel (no one-hot tensor).  Labels outside ``[0, C)`` match no class.

The conventions are those of :mod:`fastgsl.dtm`; a mask with no object (no background) gets ``+fill_value``
(``-fill_value``) everywhere.

Engines, one source: ``kernels/edt_kernel.cu`` (separable squared-distance passes, Maurer et al. 2003 lower envelope,
float64 squared distances so that unit-spacing results are exact).

* ``"cupy"``: CUDA tensors, the source compiled by CuPy (NVRTC) and launched on torch's current stream; tensors
  are exchanged zero-copy through DLPack.  One launch sequence (1 + spatial_dims - 1 kernels) for the batch.
* ``"host"``: CPU tensors (and CUDA tensors when CuPy is missing, through a host copy, with a warning); the same
  source compiled as C++ (``kernels/edt_host.cpp``) by ``setup.py``, or on first use into
  ``$FASTGSL_CACHE_DIR`` (default ``~/.cache/fastgsl``) when the package was not built; threads across lines,
  ``torch.get_num_threads()`` of them; the float64 workspace of the passes is kept per thread between calls
  (:mod:`fastgsl.ops.workspace`).  The host runs the envelope passes on tiles of 8 neighbouring lines (the
  ``itk`` and ``sites`` modes as the 8 lanes of AVX-512 registers where the CPU has AVX-512F) and the ``itk`` first
  pass as row loops; every path gives the bits of the line routines that the CUDA build runs.
* ``"scipy"``: last resort when the host library can neither be found nor compiled; a warning says so once.

:func:`engine_name` tells which engine a device gets; each call reports the engine it used to :mod:`fastgsl.observe`
(as ``edt``).

Arguments: :func:`distance_to_sites` checks its own (it is cheap); ``signed_dtm`` and ``labels_dtm`` are called by
:mod:`fastgsl.dtm`, which validates conventions, fills, label ranges and spacing first, so they only assert.
"""
from __future__ import annotations

import ctypes
import math
import threading

import numpy as np
import torch

from fastgsl import _native, observe
from fastgsl.kernels import manifest
from fastgsl.ops import workspace
from fastgsl.validation import check_spacing

MODES = {"sites": 0, "itk": 1, "edt": 2, "kervadec": 3}

_SUFFIX = {torch.uint8: "u8", torch.bool: "u8", torch.int8: "i8", torch.int16: "i16", torch.int32: "i32",
           torch.int64: "i64", torch.float32: "f32", torch.float64: "f64"}
_ABI_VERSION = 3
_MAX_AXIS = 2 ** 31 - 1  # positions along a line are 32-bit in the kernels; offsets are 64-bit
_lock = threading.Lock()
_warned: set[str] = set()


def _warn_once(key: str, msg: str):
    _native.warn_once(_warned, key, msg, stacklevel=4)


def kernel_source() -> str:
    """Text of ``kernels/edt_kernel.cu`` (what CuPy compiles)."""
    return (_native.KERNEL_DIR / "edt_kernel.cu").read_text()


# ----------------------------------------------------------------------------------------------------- host engine
def _bind(lib: ctypes.CDLL):
    ll, i32, dbl, vp = ctypes.c_longlong, ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    for sfx in set(_SUFFIX.values()):
        fn = getattr(lib, f"fastgsl_edt_first_{sfx}")
        fn.argtypes = [vp, vp, ll, ll, i32, ll, ll, ll, dbl, i32, i32, i32]
        fn.restype = i32
    lib.fastgsl_edt_envelope.argtypes = [vp, vp, ll, ll, ll, ll, dbl, i32, i32, dbl, i32, i32]
    lib.fastgsl_edt_envelope.restype = i32
    lib.fastgsl_edt_simd.argtypes = [i32]
    lib.fastgsl_edt_simd.restype = i32
    lib.fastgsl_edt_abi_version.restype = i32
    if lib.fastgsl_edt_abi_version() != _ABI_VERSION:
        raise OSError("host EDT library has a different ABI version")
    return lib


#: the host build: ``fastgsl/_edt_host*.so`` from setup.py, or compiled on demand (see :mod:`fastgsl._native`)
host_library = _native.HostLibrary(manifest.EDT, _bind)


class _HostEngine:
    name = "host"
    #: tests set this to run the CUDA build's own line routines on the host (first pass and envelope passes, the
    #: stacks in the GPU's slot-minor layout) instead of the host's tiled passes
    interleave = False

    def __init__(self, lib):
        self.lib = lib

    @staticmethod
    def _threads() -> int:
        return max(1, torch.get_num_threads())

    def first(self, src, F, nlines, C, nonzero, n0, n1, n2, s, mode):
        fn = getattr(self.lib, f"fastgsl_edt_first_{_SUFFIX[src.dtype]}")
        rc = fn(src.data_ptr(), F.data_ptr(), nlines, C, int(nonzero), n0, n1, n2, s, mode, self._threads(),
                int(self.interleave))
        if rc:
            raise MemoryError("host EDT: a worker thread failed (out of memory or no thread available)")

    def envelope(self, F, out, nlines, N, n, inner, s, mode, final, fill):
        rc = self.lib.fastgsl_edt_envelope(F.data_ptr(), out.data_ptr(), nlines, N, n, inner, s, mode, int(final),
                                           fill, self._threads(), int(self.interleave))
        if rc:
            raise MemoryError("host EDT: a worker thread failed (out of memory or no thread available)")


# ----------------------------------------------------------------------------------------------------- CUDA engine
class _CupyEngine:
    """Launches ``kernels/edt_kernel.cu`` through CuPy on torch's current stream; all buffers are torch allocations."""

    name = "cupy"
    block = 128
    workspace_bytes = 512 * 2 ** 20  # cap on the lower-envelope stacks of one pass

    def __init__(self, cupy):
        self.cp = cupy
        self._modules = {}

    def _fn(self, name: str):
        dev = self.cp.cuda.Device().id
        mod = self._modules.get(dev)
        if mod is None:
            # no FMA contraction: the GPU then rounds exactly like the host build (bit-identical results)
            mod = self.cp.RawModule(code=kernel_source(), options=("-std=c++14", "--fmad=false"))
            self._modules[dev] = mod
        return mod.get_function(name)

    def _arr(self, t: torch.Tensor):
        # zero-copy; the current CuPy stream is torch's, so the DLPack exchange needs no synchronisation
        try:
            return self.cp.from_dlpack(t)
        except Exception:  # older torch/CuPy pairs: __cuda_array_interface__ (carries no stream, so no sync)
            return self.cp.asarray(t)

    def _context(self, device: torch.device):
        stream = torch.cuda.current_stream(device)
        return self.cp.cuda.Device(device.index), self.cp.cuda.ExternalStream(stream.cuda_stream)

    def first(self, src, F, nlines, C, nonzero, n0, n1, n2, s, mode):
        dev_ctx, stream_ctx = self._context(src.device)
        with dev_ctx, stream_ctx:
            fn = self._fn(f"edt_first_{_SUFFIX[src.dtype]}")
            grid = max(1, min(-(-nlines // self.block), 2 ** 20))
            fn((grid,), (self.block,),
               (self._arr(src), self._arr(F), np.int64(nlines), np.int64(C), np.int32(nonzero), np.int64(n0),
                np.int64(n1), np.int64(n2), np.float64(s), np.int32(mode)))

    def envelope(self, F, out, nlines, N, n, inner, s, mode, final, fill):
        wlen = 2 * n
        slots = min(nlines, max(self.block, self.workspace_bytes // (12 * wlen)))
        grid = max(1, -(-slots // self.block))
        wslots = grid * self.block
        wg = torch.empty(wslots * wlen, dtype=torch.float64, device=F.device)
        wh = torch.empty(wslots * wlen, dtype=torch.int32, device=F.device)
        dev_ctx, stream_ctx = self._context(F.device)
        with dev_ctx, stream_ctx:
            fn = self._fn("edt_envelope")
            fn((grid,), (self.block,),
               (self._arr(F), self._arr(out), np.int64(nlines), np.int64(N), np.int64(n), np.int64(inner),
                np.float64(s), np.int32(mode), np.int32(int(final)), np.float64(fill), self._arr(wg), self._arr(wh),
                np.int64(wslots)))
        # the workspace goes back to torch's caching allocator, stream-ordered on this stream: no sync needed


_engines: dict[str, object] = {}


def _host_engine():
    with _lock:
        if "host" not in _engines:
            lib, where = host_library.load()
            _engines["host"] = _HostEngine(lib) if lib is not None else None
            _engines["host_reason"] = None if lib is not None else where
        return _engines["host"]


def _cupy_engine():
    with _lock:
        if "cupy" not in _engines:
            try:
                import cupy
                if cupy.cuda.runtime.getDeviceCount() < 1:
                    raise RuntimeError("CuPy sees no CUDA device")
                _engines["cupy"], _engines["cupy_reason"] = _CupyEngine(cupy), None
            except Exception as e:  # ImportError, CUDA driver errors
                _engines["cupy"], _engines["cupy_reason"] = None, f"{type(e).__name__}: {e}"
        return _engines["cupy"]


def cupy_unavailable_reason() -> str | None:
    """Why CUDA tensors cannot use the CuPy engine, or None if they can."""
    _cupy_engine()
    return _engines["cupy_reason"]


def engine_name(device="cpu") -> str:
    """``"cupy"``, ``"host"`` or ``"scipy"``: the engine a tensor on ``device`` is computed with."""
    device = torch.device(device)
    if device.type == "cuda" and _cupy_engine() is not None:
        return "cupy"
    return "host" if _host_engine() is not None else "scipy"


# ----------------------------------------------------------------------------------------------------- scipy path
def _scipy_item(m: np.ndarray, spacing, mode: int, fill: float) -> np.ndarray:
    """Reference DTM of one boolean array with scipy; the last resort when the host library is unavailable."""
    from scipy import ndimage
    if mode == MODES["sites"]:
        if not m.any():
            return np.full(m.shape, np.inf, np.float32)
        return ndimage.distance_transform_edt(~m, sampling=spacing).astype(np.float32)
    if not m.any():
        return np.full(m.shape, fill, np.float32)
    if m.all():
        return np.full(m.shape, -fill, np.float32)
    if mode == MODES["itk"]:
        contour = m & ~ndimage.binary_erosion(m, structure=np.ones((3,) * m.ndim, bool), border_value=1)
        dist = ndimage.distance_transform_edt(~contour, sampling=spacing)
        out = np.where(m, -dist, dist)
    elif mode == MODES["kervadec"]:
        out = ndimage.distance_transform_edt(~m, sampling=spacing) * ~m \
            - (ndimage.distance_transform_edt(m, sampling=spacing) - 1) * m
    else:
        out = ndimage.distance_transform_edt(~m, sampling=spacing) - ndimage.distance_transform_edt(m, sampling=spacing)
    return out.astype(np.float32)


def _scipy_run(src: torch.Tensor, nonzero: bool, C: int, shape, spacing, mode: int, fill: float) -> torch.Tensor:
    arr = src.detach().cpu().reshape((-1,) + tuple(shape)).numpy()
    B = arr.shape[0]
    out = np.empty((B * C,) + tuple(shape), np.float32)
    for b in range(B):
        for c in range(C):
            m = arr[b] != 0 if nonzero else arr[b] == c
            out[b * C + c] = _scipy_item(m, spacing, mode, fill)
    return torch.from_numpy(out).reshape(-1).to(src.device)


# ----------------------------------------------------------------------------------------------------- driver
def _run(src: torch.Tensor, *, nonzero: bool, C: int, shape, spacing, mode: int, fill: float,
         out: torch.Tensor | None = None) -> torch.Tensor:
    """Flat float32 result for items = (src items) x C, written into ``out`` (flat, contiguous) where given.
    ``src`` is contiguous with a supported dtype."""
    if any(n > _MAX_AXIS for n in shape):
        raise ValueError(f"spatial axes longer than {_MAX_AXIS} are not supported, got {tuple(shape)}")
    N = math.prod(shape)
    items = (src.numel() // N if N else 0) * C
    device = src.device
    if items * N == 0:
        return torch.empty(0, dtype=torch.float32, device=device)
    engine = None
    if device.type == "cuda":
        engine = _cupy_engine()
        if engine is None and _host_engine() is not None:
            _warn_once("cupy", "fastgsl.ops.edt: CuPy is unavailable (" + str(_engines["cupy_reason"]) + "); CUDA "
                       "tensors are transformed by the host build through a CPU copy")
            res = _run(src.cpu(), nonzero=nonzero, C=C, shape=shape, spacing=spacing, mode=mode, fill=fill)
            return res.to(device) if out is None else out.copy_(res)
    else:
        engine = _host_engine()
    if engine is None:
        _warn_once("scipy", "fastgsl.ops.edt: the native host EDT library is unavailable ("
                   + str(_engines.get("host_reason")) + "); falling back to scipy, one item at a time (slow)")
        observe.note("edt", "scipy")
        res = _scipy_run(src, nonzero, C, shape, spacing, mode, fill)
        return res if out is None else out.copy_(res)
    n0, n1, n2 = (1, *shape) if len(shape) == 2 else tuple(shape)
    if device.type == "cpu":  # kept between calls: a fresh one costs a page fault per 4 KiB on first write
        F = workspace.scratch("edt_squared", items * N, torch.float64)
    else:
        F = torch.empty(items * N, dtype=torch.float64, device=device)
    if out is None:  # on the host a large result reuses the memory of a freed one (see fastgsl.ops.workspace)
        out = workspace.recycled_empty((items * N,), torch.float32, device)
    engine.first(src, F, items * n0 * n1, C, nonzero, n0, n1, n2, spacing[-1], mode)
    for ax in range(len(shape) - 2, -1, -1):
        n = shape[ax]
        engine.envelope(F, out, items * N // n, N, n, math.prod(shape[ax + 1:]), spacing[ax], mode, ax == 0, fill)
    observe.note("edt", engine.name)
    return out


def _mask_source(mask: torch.Tensor) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return mask.contiguous().view(torch.uint8)
    if mask.dtype in _SUFFIX:
        return mask.contiguous()
    return (mask != 0).contiguous().view(torch.uint8)  # half, bfloat16, complex, unsigned wide ints


def _check_dims(x: torch.Tensor, spatial_dims, what: str):
    if spatial_dims not in (2, 3) or x.ndim < spatial_dims:
        raise ValueError(f"{what}: spatial_dims must be 2 or 3 and at most the tensor's ndim; got spatial_dims="
                         f"{spatial_dims} for a tensor of shape {tuple(x.shape)}")


def distance_to_sites(sites: torch.Tensor, spacing=None, *, spatial_dims: int,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    if out is not None and (out.dtype != torch.float32 or out.device != sites.device or not out.is_contiguous()
                            or out.numel() != sites.numel()):
        raise ValueError("out must be a contiguous float32 tensor with as many elements as sites, on its device")
    if not isinstance(sites, torch.Tensor):
        raise TypeError(f"sites must be a torch.Tensor, got {type(sites).__name__}")
    if sites.dtype != torch.bool:
        raise TypeError(f"sites must be a bool tensor, got {sites.dtype}")
    _check_dims(sites, spatial_dims, "distance_to_sites")
    shape = tuple(sites.shape[sites.ndim - spatial_dims:])
    sp = check_spacing(spacing, spatial_dims)
    res = _run(_mask_source(sites), nonzero=True, C=1, shape=shape, spacing=sp, mode=MODES["sites"],
               fill=math.inf, out=None if out is None else out.view(-1))
    return res.reshape(sites.shape)


def signed_dtm(mask: torch.Tensor, spacing=None, *, spatial_dims: int, convention: str = "itk",
               fill_value: float = 0.0) -> torch.Tensor:
    """Signed DTM (``convention`` as in :mod:`fastgsl.dtm`) of every mask in ``mask`` ``(..., *spatial)``, nonzero =
    object, in one launch sequence; float32, same shape and device.  Masks without object get ``+fill_value``,
    masks without background ``-fill_value``.  ``spacing``: None (1) or ``spatial_dims`` floats; the caller
    (:func:`fastgsl.dtm.signed_distance`) has validated every argument."""
    spacing = (1.0,) * spatial_dims if spacing is None else tuple(spacing)
    assert spatial_dims in (2, 3) and len(spacing) == spatial_dims and math.isfinite(fill_value)
    shape = tuple(mask.shape[mask.ndim - spatial_dims:])
    out = _run(_mask_source(mask), nonzero=True, C=1, shape=shape, spacing=tuple(spacing), mode=MODES[convention],
               fill=float(fill_value))
    return out.reshape(mask.shape)


def labels_dtm(labels: torch.Tensor, num_classes: int, spacing=None, *, convention: str = "itk",
               fill_value: float = 0.0) -> torch.Tensor:
    """Signed DTM of ``labels == c`` for every class ``c < num_classes``: ``(B, *spatial)`` -> ``(B, C, *spatial)``,
    with ``labels.ndim - 1`` (2 or 3) spatial dimensions.  The class test runs inside the kernel.  Arguments are
    validated by the caller (:func:`fastgsl.dtm.labels_to_dtm`)."""
    spatial_dims = labels.ndim - 1
    spacing = (1.0,) * spatial_dims if spacing is None else tuple(spacing)
    assert spatial_dims in (2, 3) and len(spacing) == spatial_dims and num_classes >= 1 and math.isfinite(fill_value)
    shape = tuple(labels.shape[1:])
    src = labels.contiguous() if labels.dtype in _SUFFIX else labels.to(torch.int64).contiguous()
    out = _run(src, nonzero=False, C=num_classes, shape=shape, spacing=tuple(spacing), mode=MODES[convention],
               fill=float(fill_value))
    return out.reshape((labels.shape[0], num_classes) + shape)


__all__ = ["distance_to_sites", "signed_dtm", "labels_dtm", "engine_name", "cupy_unavailable_reason",
           "kernel_source", "MODES", "host_library"]
