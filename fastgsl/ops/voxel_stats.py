"""Per-(batch, class) voxel statistics: the one pass every fastgsl loss is built on.

Every loss of the paper is a function of a handful of sums over voxels, taken per batch item ``b`` and class
``c`` (P is the activated prediction, T the target, D the ground-truth DTM, Dp the DTM of the thresholded
prediction):

=========  =====================================  ==================================
index      sum over voxels i                      used by
=========  =====================================  ==================================
``I``      ``P T``                                Dice, GDL
``SP``     ``P``                                  Dice, GDL
``SP2``    ``P^2``                                Dice / GDL with ``squared_pred``
``ST``     ``T``                                  Dice, GDL (and its weights)
``ST2``    ``T^2``                                Dice / GDL with ``squared_pred``
``CE``     ``-T log P`` (softmax), BCE (sigmoid)  cross-entropy
``SURF``   ``(D (1 - T - P))^2``                  GSL numerator (eq. 12)
``D2``     ``D^2``                                GSL denominator
``DP``     ``D P``                                Boundary loss (eq. 9)
``HAUS``   ``(T - P)^2 (D^2 + Dp^2)``             Hausdorff loss (eq. 7)
=========  =====================================  ==================================

So the forward of any loss, or of any composite of them, is one *statistics pass* that writes a ``(B, C, K)``
tensor, followed by cheap arithmetic on that tiny tensor (which autograd differentiates).  The backward is one
*gradient pass*: given ``dL/dS`` of shape ``(B, C, K)`` it recomputes P from the logits and writes
``dL/dlogits``.  Nothing of the size of the logits is stored between the two passes except the inputs.

This module holds the stats layout, the host implementation of both passes (the CPU path), the
``autograd.Function`` and the backend dispatch.  The host passes run on the C++ library built from
``kernels/voxel_stats_host.cpp`` (one fused loop over voxels per pass, ``torch.get_num_threads()`` threads, loaded
with ctypes through ``fastgsl._native``) for fp32 / fp16 / bf16 logits; fp64 logits (gradcheck), other input
types, or a missing library use the plain-PyTorch passes, which work in cache-sized chunks (never a one-hot or a
full-size probability tensor).  ``last_engine`` names the engine of the latest host pass (``"native"`` or
``"torch"``); ``FASTGSL_NATIVE_STATS=0`` forces the PyTorch passes.  The Triton kernels of the same two passes
live in ``fastgsl.kernels.voxel_stats`` and must agree with this file.

Gradient of the stats with respect to P (D and Dp are constants, as in the papers):

    dI/dP = T, dSP/dP = 1, dSP2/dP = 2P, dSURF/dP = -2 D^2 (1 - T - P), dDP/dP = D,
    dHAUS/dP = -2 (T - P)(D^2 + Dp^2),  and ST, ST2, D2 do not depend on P.

For ``CE`` the logits gradient is taken directly: softmax ``sum_c w_c (-T_c log p_c)`` gives
``p_j sum_c w_c T_c - w_j T_j``; sigmoid BCE gives ``w_j (p_j - T_j)``.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import torch

from fastgsl import _native
from fastgsl import backend as _backend

I, SP, SP2, ST, ST2, CE, SURF, D2, DP, HAUS = range(10)
K = 10
STAT_NAMES = ("I", "SP", "SP2", "ST", "ST2", "CE", "SURF", "D2", "DP", "HAUS")
#: stats that read the ground-truth DTM
DTM_STATS = frozenset({SURF, D2, DP, HAUS})
#: stats whose value depends on P (and therefore have a gradient pass term)
P_STATS = frozenset({I, SP, SP2, CE, SURF, DP, HAUS})

ACTIVATIONS = ("softmax", "sigmoid", "none")


@dataclass(frozen=True)
class StatSpec:
    """What one statistics pass computes.

    ``needs`` is the set of stat indices to compute (others come out as 0).  ``label_offset`` maps an integer
    label map to channels: ``T_c = (label == c + label_offset)``; it is 1 only for a one-channel sigmoid, where
    labels are {0, 1} and the channel is the foreground.
    """

    activation: str
    needs: frozenset
    label_offset: int = 0

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if CE in self.needs and self.activation == "none":
            raise ValueError("cross-entropy needs logits: activation='none' cannot be combined with a CE term")

    @property
    def mask(self) -> int:
        return sum(1 << k for k in self.needs)

    def merged(self, other: "StatSpec") -> "StatSpec":
        if (self.activation, self.label_offset) != (other.activation, other.label_offset):
            raise ValueError("losses sharing one statistics pass must use the same activation")
        return StatSpec(self.activation, self.needs | other.needs, self.label_offset)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64 (for gradcheck); every other float type is upcast to fp32 for the arithmetic."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------------------------
# Host implementation of the two passes: the C++ library, and the chunked PyTorch passes (fallback / reference).
# --------------------------------------------------------------------------------------------------------------

#: elements (voxels x channels) per chunk: large enough to amortise per-op overhead, small enough that the
#: (C, chunk) fp32 temporaries stay in cache (2^18 was fastest of 2^14..2^22 on the 2x4x96^3 benchmark).
_CHUNK_ELEMS = 1 << 18


def _chunks(n_vox: int, channels: int):
    step = max(1024, _CHUNK_ELEMS // max(channels, 1))
    for s in range(0, n_vox, step):
        yield s, min(s + step, n_vox)


def _activate(z: torch.Tensor, activation: str, want_log: bool):
    """P (and log P for softmax CE) of a (C, n) chunk of logits."""
    if activation == "softmax":
        m = z.amax(0, keepdim=True)
        e = (z - m).exp_()
        s = e.sum(0, keepdim=True)
        p = e.div_(s)
        logp = (z - m).sub_(s.log()) if want_log else None
        return p, logp
    if activation == "sigmoid":
        return torch.sigmoid(z), None
    return z, None


def _target_chunk(target, b, s, e, channels, offset, cd):
    if target.dtype.is_floating_point:
        return target[b, :, s:e].to(cd)
    lab = target[b, s:e]
    classes = torch.arange(offset, offset + channels, device=lab.device).unsqueeze(1)
    return (lab.unsqueeze(0) == classes).to(cd)


def _flatten_inputs(logits, target, dtm, dtm_pred):
    B, C = logits.shape[:2]
    n = logits[0, 0].numel()
    z = logits.reshape(B, C, n)
    t = target.reshape(B, C, n) if target.dtype.is_floating_point else target.reshape(B, n)
    d = None if dtm is None else dtm.reshape(B, C, n)
    dp = None if dtm_pred is None else dtm_pred.reshape(B, C, n)
    return z, t, d, dp


def _forward_chunked(logits, target, dtm, dtm_pred, spec: StatSpec) -> torch.Tensor:
    """PyTorch statistics pass: returns ``(B, C, K)`` sums in fp32 (fp64 for fp64 logits).

    Reads logits ``(B, C, *sp)``, target (integer labels ``(B, *sp)`` or float ``(B, C, *sp)``), and the DTMs
    when a DTM stat is needed.  Chunks are summed in a fixed order, so the result is bit-reproducible.
    """
    cd = compute_dtype(logits.dtype)
    z, t, d, dp = _flatten_inputs(logits, target, dtm, dtm_pred)
    B, C, n = z.shape
    need = spec.needs
    out = torch.zeros(B, C, K, dtype=cd, device=logits.device)
    for b in range(B):
        for s, e in _chunks(n, C):
            zc = z[b, :, s:e].to(cd)
            p, logp = _activate(zc, spec.activation, CE in need)
            tc = _target_chunk(t, b, s, e, C, spec.label_offset, cd)
            acc = out[b]
            if I in need:
                acc[:, I] += (p * tc).sum(1)
            if SP in need:
                acc[:, SP] += p.sum(1)
            if SP2 in need:
                acc[:, SP2] += (p * p).sum(1)
            if ST in need:
                acc[:, ST] += tc.sum(1)
            if ST2 in need:
                acc[:, ST2] += (tc * tc).sum(1)
            if CE in need:
                if spec.activation == "softmax":
                    acc[:, CE] -= (tc * logp).sum(1)
                else:  # numerically stable BCE with logits
                    bce = zc.clamp_min(0) - zc * tc + torch.log1p(torch.exp(-zc.abs()))
                    acc[:, CE] += bce.sum(1)
            if need & DTM_STATS:
                dc = d[b, :, s:e].to(cd)
                dd = dc * dc
                if SURF in need:
                    r = (1.0 - tc - p) * dc
                    acc[:, SURF] += (r * r).sum(1)
                if D2 in need:
                    acc[:, D2] += dd.sum(1)
                if DP in need:
                    acc[:, DP] += (dc * p).sum(1)
                if HAUS in need:
                    w = dd if dp is None else dd + dp[b, :, s:e].to(cd).square()
                    diff = tc - p
                    acc[:, HAUS] += (diff * diff * w).sum(1)
    return out


def _backward_chunked(grad_stats, logits, target, dtm, dtm_pred, spec: StatSpec) -> torch.Tensor:
    """PyTorch gradient pass: ``dL/dlogits`` in the logits' dtype, from ``grad_stats = dL/dS`` (B, C, K)."""
    cd = compute_dtype(logits.dtype)
    z, t, d, dp = _flatten_inputs(logits, target, dtm, dtm_pred)
    B, C, n = z.shape
    need = spec.needs & P_STATS
    gs = grad_stats.to(cd)
    grad = torch.empty_like(z)
    for b in range(B):
        coef = gs[b].unsqueeze(-1)  # (C, K, 1): per-class coefficients broadcast over voxels
        for s, e in _chunks(n, C):
            zc = z[b, :, s:e].to(cd)
            p, _ = _activate(zc, spec.activation, False)
            tc = _target_chunk(t, b, s, e, C, spec.label_offset, cd)
            g = torch.zeros_like(p)  # dL/dP
            if I in need:
                g += coef[:, I] * tc
            if SP in need:
                g += coef[:, SP]
            if SP2 in need:
                g += 2.0 * coef[:, SP2] * p
            if need & DTM_STATS:
                dc = d[b, :, s:e].to(cd)
                dd = dc * dc
                if SURF in need:
                    g -= 2.0 * coef[:, SURF] * dd * (1.0 - tc - p)
                if DP in need:
                    g += coef[:, DP] * dc
                if HAUS in need:
                    w = dd if dp is None else dd + dp[b, :, s:e].to(cd).square()
                    g -= 2.0 * coef[:, HAUS] * (tc - p) * w
            if spec.activation == "softmax":
                dz = p * (g - (p * g).sum(0, keepdim=True))
            elif spec.activation == "sigmoid":
                dz = g * p * (1.0 - p)
            else:
                dz = g
            if CE in need:
                wce = coef[:, CE]
                if spec.activation == "softmax":
                    dz += p * (wce * tc).sum(0, keepdim=True) - wce * tc
                else:
                    dz += wce * (p - tc)
            grad[b, :, s:e] = dz.to(grad.dtype)
    return grad.reshape(logits.shape)


_ABI_VERSION = 2
_Z_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_T_CODE = {torch.float32: 0, torch.int64: 1, torch.int32: 2, torch.uint8: 3}
_ACT_CODE = {"softmax": 0, "sigmoid": 1, "none": 2}
_NEEDS_DTM = sum(1 << k for k in DTM_STATS)
_warned: set = set()

#: engine of the latest host pass: "native" (the C++ library) or "torch" (the chunked PyTorch passes)
last_engine: str | None = None


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, ll, i32 = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int
    lib.fastgsl_stats_abi_version.restype = i32
    if lib.fastgsl_stats_abi_version() != _ABI_VERSION:
        raise OSError("host statistics library has a different ABI version")
    lib.fastgsl_stats_forward.argtypes = [vp, i32, vp, i32, vp, vp, vp, ll, ll, ll, i32, i32, ll, i32, i32]
    lib.fastgsl_stats_forward.restype = i32
    lib.fastgsl_stats_backward.argtypes = [vp, vp, i32, vp, i32, vp, vp, vp, ll, ll, ll, i32, i32, ll, i32, i32]
    lib.fastgsl_stats_backward.restype = i32
    return lib


#: ``fastgsl/_stats_host*.so`` built by setup.py, or compiled on first use (see :mod:`fastgsl._native`)
host_library = _native.HostLibrary("_stats_host", "voxel_stats_host.cpp",
                                   ("voxel_stats_host.cpp", "host_parallel.h"),
                                   "FASTGSL_STATS_SOURCE_HASH", "fastgsl_stats", _bind)


def native_library():
    """The loaded C++ library, or None (then a warning, once, says why) or when ``FASTGSL_NATIVE_STATS=0``."""
    if os.environ.get("FASTGSL_NATIVE_STATS", "1") == "0":
        return None
    lib, where = host_library.load()
    if lib is None:
        _native.warn_once(_warned, "stats", "fastgsl: the native host statistics library is unavailable ("
                          f"{where}); the CPU path runs the slower chunked PyTorch passes", stacklevel=4)
    return lib


def _native_inputs(logits, target, dtm, dtm_pred, need: int):
    """Contiguous inputs in the dtypes the C++ passes read, or None where they must fall back to PyTorch.

    Conversions (one pass each, only when needed): bool labels are read as uint8, int8 / int16 labels as int32,
    other float targets and DTMs become float32 (what the PyTorch passes compute them in for these logits)."""
    if logits.device.type != "cpu" or logits.dtype not in _Z_CODE or logits.ndim < 2 or logits.shape[1] < 1:
        return None
    if target.device.type != "cpu":
        return None
    if target.dtype.is_floating_point:
        t = target.to(torch.float32)
    elif target.dtype == torch.bool:
        t = target.view(torch.uint8) if target.is_contiguous() else target.to(torch.uint8)
    elif target.dtype in (torch.int8, torch.int16):
        t = target.to(torch.int32)
    elif target.dtype in _T_CODE:
        t = target
    else:
        return None  # unsigned wide ints, complex: the PyTorch path decides
    d = dp = None
    if need & _NEEDS_DTM:
        if dtm is None or dtm.device.type != "cpu":
            return None
        d = dtm.to(torch.float32).contiguous()
        if dtm_pred is not None and need >> HAUS & 1:
            if dtm_pred.device.type != "cpu":
                return None
            dp = dtm_pred.to(torch.float32).contiguous()
    return logits.contiguous(), t.contiguous(), d, dp


def _ptr(x):
    return None if x is None else x.data_ptr()


def _forward_native(lib, logits, target, dtm, dtm_pred, spec, isa: int = 0):
    prepared = _native_inputs(logits, target, dtm, dtm_pred, spec.mask)
    if prepared is None:
        return None
    z, t, d, dp = prepared
    B, C = z.shape[:2]
    n = z[0, 0].numel() if B else 0
    out = torch.zeros(B, C, K, dtype=torch.float32)
    if B * n == 0:  # empty tensors may have null data pointers
        return out
    rc = lib.fastgsl_stats_forward(z.data_ptr(), _Z_CODE[z.dtype], t.data_ptr(), _T_CODE[t.dtype], _ptr(d), _ptr(dp),
                                   out.data_ptr(), B, C, n, _ACT_CODE[spec.activation], spec.mask, spec.label_offset,
                                   max(1, torch.get_num_threads()), isa)
    if rc == 1:
        raise MemoryError("fastgsl: the host statistics pass ran out of memory or could not start a thread")
    if rc:
        raise RuntimeError(f"fastgsl: the host statistics pass rejected its arguments (code {rc})")
    return out


def _backward_native(lib, grad_stats, logits, target, dtm, dtm_pred, spec, isa: int = 0):
    need = spec.mask & sum(1 << k for k in P_STATS)
    prepared = _native_inputs(logits, target, dtm, dtm_pred, need)
    if prepared is None:
        return None
    z, t, d, dp = prepared
    B, C = z.shape[:2]
    n = z[0, 0].numel() if B else 0
    gs = grad_stats.to(torch.float32).contiguous()
    grad = torch.empty_like(z, memory_format=torch.contiguous_format)
    if B * n == 0:
        return grad.reshape(logits.shape)
    rc = lib.fastgsl_stats_backward(gs.data_ptr(), z.data_ptr(), _Z_CODE[z.dtype], t.data_ptr(), _T_CODE[t.dtype],
                                    _ptr(d), _ptr(dp), grad.data_ptr(), B, C, n, _ACT_CODE[spec.activation], need,
                                    spec.label_offset, max(1, torch.get_num_threads()), isa)
    if rc == 1:
        raise MemoryError("fastgsl: the host gradient pass ran out of memory or could not start a thread")
    if rc:
        raise RuntimeError(f"fastgsl: the host gradient pass rejected its arguments (code {rc})")
    return grad.reshape(logits.shape)


def voxel_stats_forward_torch(logits, target, dtm, dtm_pred, spec: StatSpec) -> torch.Tensor:
    """Statistics pass on the host: returns ``(B, C, K)`` sums in fp32 (fp64 for fp64 logits).

    Reads logits ``(B, C, *sp)``, target (integer labels ``(B, *sp)`` or float ``(B, C, *sp)``), and the DTMs
    when a DTM stat is needed.  Runs the C++ pass when the library is available and the inputs are supported,
    else :func:`_forward_chunked`; both sum in a fixed order, so the result is bit-reproducible (the C++ pass
    also for any thread count).
    """
    global last_engine
    lib = native_library() if logits.dtype != torch.float64 else None
    if lib is not None:
        out = _forward_native(lib, logits, target, dtm, dtm_pred, spec)
        if out is not None:
            last_engine = "native"
            return out
    last_engine = "torch"
    return _forward_chunked(logits, target, dtm, dtm_pred, spec)


def voxel_stats_backward_torch(grad_stats, logits, target, dtm, dtm_pred, spec: StatSpec) -> torch.Tensor:
    """Gradient pass on the host: ``dL/dlogits`` in the logits' dtype, from ``grad_stats = dL/dS`` (B, C, K).

    The C++ pass when available and the inputs are supported, else :func:`_backward_chunked`."""
    global last_engine
    lib = native_library() if logits.dtype != torch.float64 else None
    if lib is not None:
        grad = _backward_native(lib, grad_stats, logits, target, dtm, dtm_pred, spec)
        if grad is not None:
            last_engine = "native"
            return grad
    last_engine = "torch"
    return _backward_chunked(grad_stats, logits, target, dtm, dtm_pred, spec)


# --------------------------------------------------------------------------------------------------------------
# autograd.Function and dispatch.
# --------------------------------------------------------------------------------------------------------------

def _kernels():
    """The Triton module; importing it registers ``torch.ops.fastgsl.voxel_stats_fwd`` / ``voxel_stats_bwd``."""
    from fastgsl.kernels import voxel_stats as triton_impl

    return triton_impl


def _use_triton(logits: torch.Tensor) -> bool:
    # fp64 always runs on the host path (in fp64, for gradcheck); the kernels accumulate in fp32.
    return _backend.resolve(logits.device) == "triton" and logits.dtype != torch.float64


class VoxelStatsFunction(torch.autograd.Function):
    """``S = voxel_stats(logits, target, dtm, dtm_pred)``; gradients flow to ``logits`` only.

    With ``use_triton`` both passes call the registered ops ``torch.ops.fastgsl.voxel_stats_fwd/_bwd`` (Triton
    kernels, traceable by ``torch.compile``); otherwise the PyTorch host functions above.  Only the inputs are
    saved for backward: nothing of the logits' size is kept between the passes.
    """

    @staticmethod
    def forward(ctx, logits, target, dtm, dtm_pred, spec, use_triton=False, use_atomics=False):
        ctx.spec = spec
        ctx.use_triton = use_triton
        ctx.save_for_backward(logits, target, dtm, dtm_pred)
        if use_triton:
            return torch.ops.fastgsl.voxel_stats_fwd(logits, target, dtm, dtm_pred, spec.mask, spec.activation,
                                                     spec.label_offset, use_atomics)
        return voxel_stats_forward_torch(logits, target, dtm, dtm_pred, spec)

    @staticmethod
    def backward(ctx, grad_stats):
        logits, target, dtm, dtm_pred = ctx.saved_tensors
        spec = ctx.spec
        if ctx.use_triton:
            grad = torch.ops.fastgsl.voxel_stats_bwd(grad_stats.contiguous(), logits, target, dtm, dtm_pred,
                                                     spec.mask, spec.activation, spec.label_offset)
        else:
            grad = voxel_stats_backward_torch(grad_stats.contiguous(), logits, target, dtm, dtm_pred, spec)
        return grad, None, None, None, None, None, None


def _check_tensors(logits, target, dtm, dtm_pred):
    """Cheap shape / device / dtype checks (no host sync); label *values* are checked by the losses."""
    if not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.ndim < 3:
        raise ValueError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
    B = logits.shape[0]
    n = logits[0, 0].numel()
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but logits are on {logits.device}")
    if target.dtype.is_floating_point:
        if target.shape != logits.shape:
            raise ValueError(f"float target must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(target.shape)}")
    elif target.is_complex() or target.ndim < 1 or target.shape[0] != B or target.numel() != B * n:
        raise ValueError(f"integer labels must be (B, *spatial) = {(B,) + tuple(logits.shape[2:])}, "
                         f"got {tuple(target.shape)} {target.dtype}")
    for name, d in (("dtm", dtm), ("dtm_pred", dtm_pred)):
        if d is None:
            continue
        if d.shape != logits.shape:
            raise ValueError(f"{name} must have the logits' shape {tuple(logits.shape)}, got {tuple(d.shape)}")
        if not d.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got {d.dtype}")
        if d.device != logits.device:
            raise ValueError(f"{name} is on {d.device} but logits are on {logits.device}")


def voxel_stats(logits, target, dtm=None, dtm_pred=None, *, spec: StatSpec) -> torch.Tensor:
    """Differentiable ``(B, C, K)`` voxel statistics; see the module docstring for the layout.

    Runs on the Triton kernels or the host path as ``fastgsl.backend`` decides (``FASTGSL_BACKEND``).  On the
    kernels the reduction is fixed-order unless ``FASTGSL_ATOMICS=1`` (see ``fastgsl.backend.atomics_enabled``).
    """
    if spec.needs & DTM_STATS and dtm is None:
        raise ValueError("a DTM statistic was requested but no dtm was given")
    if not spec.needs & DTM_STATS:
        dtm = dtm_pred = None
    elif HAUS not in spec.needs:
        dtm_pred = None  # only the two-sided Hausdorff stat reads it
    _check_tensors(logits, target, dtm, dtm_pred)
    use_triton = _use_triton(logits)
    if use_triton:
        _kernels()
    return VoxelStatsFunction.apply(logits, target, dtm, dtm_pred, spec, use_triton,
                                    use_triton and _backend.atomics_enabled())


__all__ = ["I", "SP", "SP2", "ST", "ST2", "CE", "SURF", "D2", "DP", "HAUS", "K", "STAT_NAMES", "StatSpec",
           "voxel_stats", "voxel_stats_forward_torch", "voxel_stats_backward_torch", "VoxelStatsFunction",
           "compute_dtype"]
