"""The host (CPU) implementation of the statistics and gradient passes.

Two engines compute the same sums (``layout.py`` defines them):

* ``"native"``: the C++ library built from ``kernels/voxel_stats_host.cpp`` (one fused loop over voxels per pass,
  ``torch.get_num_threads()`` threads, loaded with ctypes through ``fastgsl._native``), for fp32 / fp16 / bf16
  logits on the CPU;
* ``"torch"``: plain-PyTorch passes in cache-sized chunks (never a one-hot or a full-size probability tensor), for
  fp64 logits (gradcheck), other input types, tensors on another device, or a missing library.
  ``FASTGSL_NATIVE_STATS=0`` forces them.

Both sum in a fixed order, so results are bit-reproducible (the C++ passes also for any thread count).  The
engine of each call is reported to :mod:`fastgsl.observe` as ``voxel_stats``.  Inputs are trusted: the caller
(``function.voxel_stats``) has validated them.
"""
from __future__ import annotations

import ctypes
import os

import torch

from fastgsl import _native, observe
from fastgsl.kernels import manifest
from fastgsl.ops import workspace
from fastgsl.ops.voxel_stats.layout import (ACT_CODE, CE, D2, DP, DTM_STATS, HAUS, I, K, LAYOUT_SIGNATURE,
                                            LOGIT_DTYPES, P_STATS, SP, SP2, ST, ST2, SURF, TARGET_DTYPES, mask_of)
from fastgsl.ops.voxel_stats.spec import StatSpec
from fastgsl.validation import LabelRange

def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64 (for gradcheck); every other float type is upcast to fp32 for the arithmetic."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------------------------------------------
# The chunked PyTorch passes.
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


# --------------------------------------------------------------------------------------------------------------
# The C++ passes.
# --------------------------------------------------------------------------------------------------------------

_ABI_VERSION = 4
_Z_CODE = {getattr(torch, name): code for code, name in enumerate(LOGIT_DTYPES)}
_T_CODE = {getattr(torch, name): code for code, name in enumerate(TARGET_DTYPES)}
_NEEDS_DTM = mask_of(DTM_STATS)
_P_MASK = mask_of(P_STATS)
_warned: set = set()


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, ll, i32 = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int
    lib.fastgsl_stats_abi_version.restype = i32
    if lib.fastgsl_stats_abi_version() != _ABI_VERSION:
        raise OSError("host statistics library has a different ABI version")
    lib.fastgsl_stats_layout.restype = ctypes.c_char_p
    if lib.fastgsl_stats_layout().decode() != LAYOUT_SIGNATURE:
        raise OSError("host statistics library was built with another stats layout (regenerate "
                      "kernels/voxel_stats_layout.h: python -m fastgsl.ops.voxel_stats.layout)")
    lib.fastgsl_stats_forward.argtypes = [vp, i32, vp, i32, vp, vp, vp, ll, ll, ll, i32, i32, ll, i32, i32, vp]
    lib.fastgsl_stats_forward.restype = i32
    lib.fastgsl_stats_backward.argtypes = [vp, vp, i32, vp, i32, vp, vp, vp, ll, ll, ll, i32, i32, ll, i32, i32]
    lib.fastgsl_stats_backward.restype = i32
    return lib


#: ``fastgsl/_stats_host*.so`` built by setup.py, or compiled on first use (see :mod:`fastgsl._native`)
host_library = _native.HostLibrary(manifest.STATS, _bind)


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


def check_labels_by_reduction(labels: LabelRange, target: torch.Tensor) -> None:
    """``labels.check(target)`` where no pass tests the labels as it reads them (reported as ``"aminmax"``)."""
    labels.check(target)
    observe.note("label_check", "aminmax")


def _forward_native(lib, logits, target, dtm, dtm_pred, spec, isa: int = 0, labels: LabelRange | None = None):
    """The C++ statistics pass, or None where the inputs need the PyTorch one.

    With integer labels and a ``labels`` rule that allows exactly the labels of the channels (``[0, C)``, no label
    offset), the pass flags any label that matches no channel; a flag raises the rule's error (whose values one
    ``aminmax`` then finds) before the sums are returned.  Any other rule is checked by :meth:`LabelRange.check`
    first."""
    prepared = _native_inputs(logits, target, dtm, dtm_pred, spec.mask)
    if prepared is None:
        return None
    z, t, d, dp = prepared
    B, C = z.shape[:2]
    n = z[0, 0].numel() if B else 0
    out = torch.zeros(B, C, K, dtype=torch.float32)
    if B * n == 0:  # empty tensors may have null data pointers
        return out
    fused = labels is not None and not t.dtype.is_floating_point
    if fused and (spec.label_offset or labels.num_labels != C):
        check_labels_by_reduction(labels, target)
        fused = False
    elif fused:
        observe.note("label_check", "fused")
    outside = torch.zeros(1, dtype=torch.int32)
    rc = lib.fastgsl_stats_forward(z.data_ptr(), _Z_CODE[z.dtype], t.data_ptr(), _T_CODE[t.dtype], _ptr(d), _ptr(dp),
                                   out.data_ptr(), B, C, n, ACT_CODE[spec.activation], spec.mask, spec.label_offset,
                                   max(1, torch.get_num_threads()), isa, outside.data_ptr() if fused else None)
    if rc == 1:
        raise MemoryError("fastgsl: the host statistics pass ran out of memory or could not start a thread")
    if rc:
        raise RuntimeError(f"fastgsl: the host statistics pass rejected its arguments (code {rc})")
    if fused and outside.item():  # the error path only: one reduction finds the values the error names
        lo, hi = torch.aminmax(t)
        labels.raise_outside(int(lo), int(hi))
        raise RuntimeError(f"fastgsl: the host statistics pass flagged a label outside [0, {C}) that aminmax "
                           f"places in [{int(lo)}, {int(hi)}]")
    return out


def _backward_native(lib, grad_stats, logits, target, dtm, dtm_pred, spec, isa: int = 0):
    need = spec.mask & _P_MASK
    prepared = _native_inputs(logits, target, dtm, dtm_pred, need)
    if prepared is None:
        return None
    z, t, d, dp = prepared
    B, C = z.shape[:2]
    n = z[0, 0].numel() if B else 0
    gs = grad_stats.to(torch.float32).contiguous()
    grad = workspace.recycled_empty(z.shape, z.dtype)  # a large one: memory that a freed gradient used
    if B * n == 0:
        return grad.reshape(logits.shape)
    rc = lib.fastgsl_stats_backward(gs.data_ptr(), z.data_ptr(), _Z_CODE[z.dtype], t.data_ptr(), _T_CODE[t.dtype],
                                    _ptr(d), _ptr(dp), grad.data_ptr(), B, C, n, ACT_CODE[spec.activation], need,
                                    spec.label_offset, max(1, torch.get_num_threads()), isa)
    if rc == 1:
        raise MemoryError("fastgsl: the host gradient pass ran out of memory or could not start a thread")
    if rc:
        raise RuntimeError(f"fastgsl: the host gradient pass rejected its arguments (code {rc})")
    return grad.reshape(logits.shape)


def forward_host(logits, target, dtm, dtm_pred, spec: StatSpec, labels: LabelRange | None = None) -> torch.Tensor:
    """Statistics pass on the host: returns ``(B, C, K)`` sums in fp32 (fp64 for fp64 logits).

    Reads logits ``(B, C, *sp)``, target (integer labels ``(B, *sp)`` or float ``(B, C, *sp)``), and the DTMs
    when a DTM stat is needed.  Runs the C++ pass when the library is available and the inputs are supported,
    else :func:`_forward_chunked`; both sum in a fixed order, so the result is bit-reproducible (the C++ pass
    also for any thread count).  ``labels``: the rule integer labels must follow, checked before anything is
    returned; the C++ pass tests each label as it reads it where the rule allows exactly the channels' labels
    (reported to :mod:`fastgsl.observe` as ``label_check``: ``"fused"``); otherwise :meth:`LabelRange.check` runs
    first (``"aminmax"``).
    """
    lib = native_library() if logits.dtype != torch.float64 else None
    if lib is not None:
        out = _forward_native(lib, logits, target, dtm, dtm_pred, spec, labels=labels)
        if out is not None:
            observe.note("voxel_stats", "native")
            return out
    if labels is not None and not target.dtype.is_floating_point:
        check_labels_by_reduction(labels, target)
    observe.note("voxel_stats", "torch")
    return _forward_chunked(logits, target, dtm, dtm_pred, spec)


def backward_host(grad_stats, logits, target, dtm, dtm_pred, spec: StatSpec) -> torch.Tensor:
    """Gradient pass on the host: ``dL/dlogits`` in the logits' dtype, from ``grad_stats = dL/dS`` (B, C, K).

    The C++ pass when available and the inputs are supported, else :func:`_backward_chunked`."""
    lib = native_library() if logits.dtype != torch.float64 else None
    if lib is not None:
        grad = _backward_native(lib, grad_stats, logits, target, dtm, dtm_pred, spec)
        if grad is not None:
            observe.note("voxel_stats", "native")
            return grad
    observe.note("voxel_stats", "torch")
    return _backward_chunked(grad_stats, logits, target, dtm, dtm_pred, spec)


__all__ = ["forward_host", "backward_host", "check_labels_by_reduction", "native_library", "host_library",
           "compute_dtype"]
