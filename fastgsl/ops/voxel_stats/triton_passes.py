"""Fused Triton kernels of the voxel-statistics pass and its gradient pass.

Both passes are the Triton twins of the host passes (``host.py``); ``layout.py`` defines the ``(B, C, K)`` layout
and the formulas, and the kernels read its indices and codes as named ``constexpr`` s:

* ``voxel_stats_forward(logits, target, dtm, dtm_pred, spec) -> (B, C, K)`` fp32 sums.  One read of each input
  element: logits in any float dtype (upcast to fp32 in registers), integer labels compared with the class index
  in registers (``T_c = (label == c + spec.label_offset)``, never a one-hot tensor) or a float ``(B, C, *sp)``
  target, and the DTM / predicted DTM only when a DTM stat is asked for.  Only the stats in ``spec.needs`` are
  computed (constexpr flags); the others are written as 0, as on the host path.
* ``voxel_stats_backward(grad_stats, logits, target, dtm, dtm_pred, spec) -> dL/dlogits`` in the logits' dtype.
  It recomputes the activation from the logits and reads ``grad_stats`` on the device: no host synchronisation.

Layout and reduction.  The spatial dims are flattened to ``N``; a program owns ``TILES`` consecutive tiles of
``(C_PAD, BLOCK_N)`` elements of one batch item (``C_PAD`` = next power of two of ``C``, padded classes masked).
Each program writes its fp32 partial sums to ``partials[b, program, c, k]``; a second kernel adds the partials of
each ``(b, c, k)`` in program order.  That fixed order makes the result bit-reproducible for a given device and
shape.  ``use_atomics=True`` (opt-in, see ``fastgsl.backend.atomics_enabled``) instead ``atomic_add``s each
program's sums straight into the output: one launch fewer, but the order of the additions, hence the last bits,
vary from run to run.

Offsets are computed in int64 (program ids are cast first), so volumes beyond 2^31 elements index correctly.
Inputs that are not contiguous are copied once with ``.contiguous()`` (a no-op for contiguous tensors).

fp64 logits fall back to the PyTorch host path (the statistics and the gradient are then computed in fp64, as
gradcheck expects); the kernels themselves always accumulate in fp32.

The two passes are registered as ``torch.ops.fastgsl.voxel_stats_fwd`` / ``voxel_stats_bwd`` with
``torch.library.triton_op`` + ``wrap_triton`` so that ``torch.compile(fullgraph=True)`` traces through them.  Under
the Triton interpreter (``TRITON_INTERPRET=1``) ``wrap_triton`` cannot make an interpreted kernel traceable, so
there the same bodies are registered as opaque ``torch.library.custom_op`` s with a shape-only fake kernel; this
still compiles without graph breaks.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import triton
import triton.language as tl
from torch.library import custom_op, triton_op, wrap_triton

from fastgsl.ops.voxel_stats import layout
from fastgsl.ops.voxel_stats.host import backward_host, compute_dtype, forward_host
from fastgsl.ops.voxel_stats.spec import StatSpec

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"

# The layout as compile-time constants of the kernels (Triton reads globals only as constexprs).
NK = tl.constexpr(layout.K)
S_I = tl.constexpr(layout.I)
S_SP = tl.constexpr(layout.SP)
S_SP2 = tl.constexpr(layout.SP2)
S_ST = tl.constexpr(layout.ST)
S_ST2 = tl.constexpr(layout.ST2)
S_CE = tl.constexpr(layout.CE)
S_SURF = tl.constexpr(layout.SURF)
S_D2 = tl.constexpr(layout.D2)
S_DP = tl.constexpr(layout.DP)
S_HAUS = tl.constexpr(layout.HAUS)
# bit masks of the stats, for tests on the NEED mask (written `M_X & NEED`: constexpr has no reflected `&`)
M_I = tl.constexpr(1 << layout.I)
M_SP = tl.constexpr(1 << layout.SP)
M_SP2 = tl.constexpr(1 << layout.SP2)
M_ST = tl.constexpr(1 << layout.ST)
M_ST2 = tl.constexpr(1 << layout.ST2)
M_CE = tl.constexpr(1 << layout.CE)
M_SURF = tl.constexpr(1 << layout.SURF)
M_D2 = tl.constexpr(1 << layout.D2)
M_DP = tl.constexpr(1 << layout.DP)
M_HAUS = tl.constexpr(1 << layout.HAUS)
M_DTM_P = tl.constexpr(layout.mask_of(layout.DTM_P_STATS))
ACT_SOFTMAX = tl.constexpr(layout.ACT_CODE["softmax"])
ACT_SIGMOID = tl.constexpr(layout.ACT_CODE["sigmoid"])


# --------------------------------------------------------------------------------------------------------------
# Kernels.
# --------------------------------------------------------------------------------------------------------------

@triton.jit
def _log1p(x):
    # log1p without libdevice (the interpreter has none): log(u) * x / (u - 1) with u = 1 + x cancels the rounding
    # of u (Goldberg, "What every computer scientist should know about floating-point arithmetic", thm. 4).
    u = 1.0 + x
    den = tl.where(u == 1.0, 1.0, u - 1.0)
    return tl.where(u == 1.0, x, tl.log(u) * (x / den))


@triton.jit
def _tile(z_ptr, t_ptr, d_ptr, dp_ptr, b, C, N, label_offset, offs, cls,
          ACT: tl.constexpr, LABELS: tl.constexpr, LOAD_D: tl.constexpr, HAS_DP: tl.constexpr,
          WANT_LOG: tl.constexpr):
    """Load one (C_PAD, BLOCK_N) tile and activate it.

    Returns (mask, z, p, logp, t, d, w) in fp32, where w = D^2 (+ Dp^2).  Outside ``mask`` the values are finite
    but meaningless: callers mask every sum.
    """
    cmask = cls < C
    vmask = offs < N
    m2 = cmask[:, None] & vmask[None, :]
    row = (b * C + cls.to(tl.int64)) * N
    off2 = row[:, None] + offs[None, :]
    z = tl.load(z_ptr + off2, mask=m2, other=0.0).to(tl.float32)
    if LABELS:
        lab = tl.load(t_ptr + b * N + offs, mask=vmask, other=0)
        t = (lab[None, :].to(tl.int64) == (cls[:, None] + label_offset).to(tl.int64)).to(tl.float32)
    else:
        t = tl.load(t_ptr + off2, mask=m2, other=0.0).to(tl.float32)
    logp = z
    if ACT == ACT_SOFTMAX:  # softmax over the class axis; padded classes get -inf so they carry no mass
        zs = tl.where(cmask[:, None], z, float("-inf"))
        mx = tl.max(zs, axis=0)
        e = tl.exp(zs - mx[None, :])
        s = tl.sum(e, axis=0)
        p = e / s[None, :]
        if WANT_LOG:
            logp = z - (mx + tl.log(s))[None, :]  # z, not zs: padded classes stay finite
    elif ACT == ACT_SIGMOID:
        p = tl.sigmoid(z)
    else:
        p = z
    p = tl.where(m2, p, 0.0)
    t = tl.where(m2, t, 0.0)
    d = z
    w = z
    if LOAD_D:
        d = tl.load(d_ptr + off2, mask=m2, other=0.0).to(tl.float32)
        w = d * d
        if HAS_DP:
            dp = tl.load(dp_ptr + off2, mask=m2, other=0.0).to(tl.float32)
            w = w + dp * dp
    return m2, z, p, logp, t, d, w


@triton.jit
def _store_stat(out_ptr, base, k: tl.constexpr, acc, cmask, ON: tl.constexpr, ATOMIC: tl.constexpr):
    """Reduce one (C_PAD, BLOCK_N) accumulator over voxels and write it (0 for a stat that is not needed)."""
    if ON:
        v = tl.sum(acc, axis=1)
    else:
        v = tl.zeros([acc.shape[0]], tl.float32)
    if ATOMIC:
        tl.atomic_add(out_ptr + base + k, v, mask=cmask)
    else:
        tl.store(out_ptr + base + k, v, mask=cmask)


@triton.jit
def _voxel_stats_fwd_kernel(z_ptr, t_ptr, d_ptr, dp_ptr, out_ptr, C, N, label_offset, tiles, n_prog,
                            NEED: tl.constexpr, ACT: tl.constexpr, LABELS: tl.constexpr, HAS_DP: tl.constexpr,
                            ATOMIC: tl.constexpr, C_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """Statistics pass.

    Reads logits / float target / DTMs ``(B, C, N)`` and integer labels ``(B, N)`` over ``tiles`` tiles; writes
    fp32 sums to ``partials[b, pid, c, k]`` (``(B, n_prog, C, K)``), or atomically adds them into ``out[b, c, k]``.
    The sums are accumulated element-wise in (C_PAD, BLOCK_N) registers and reduced over voxels once at the end,
    so the loop body has no cross-thread reduction.
    """
    pid = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    cls = tl.arange(0, C_PAD)
    DO_I: tl.constexpr = (M_I & NEED) != 0
    DO_SP: tl.constexpr = (M_SP & NEED) != 0
    DO_SP2: tl.constexpr = (M_SP2 & NEED) != 0
    DO_ST: tl.constexpr = (M_ST & NEED) != 0
    DO_ST2: tl.constexpr = (M_ST2 & NEED) != 0
    DO_CE: tl.constexpr = (M_CE & NEED) != 0
    DO_SURF: tl.constexpr = (M_SURF & NEED) != 0
    DO_D2: tl.constexpr = (M_D2 & NEED) != 0
    DO_DP: tl.constexpr = (M_DP & NEED) != 0
    DO_HAUS: tl.constexpr = (M_HAUS & NEED) != 0
    LOAD_D: tl.constexpr = DO_SURF or DO_D2 or DO_DP or DO_HAUS
    a_i = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_sp = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_sp2 = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_st = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_st2 = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_ce = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_surf = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_d2 = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_dp = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    a_haus = tl.zeros([C_PAD, BLOCK_N], tl.float32)
    for it in range(0, tiles):
        offs = (pid * tiles + it) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
        m2, z, p, logp, t, d, w = _tile(z_ptr, t_ptr, d_ptr, dp_ptr, b, C, N, label_offset, offs, cls,
                                        ACT, LABELS, LOAD_D, HAS_DP, DO_CE)
        # p and t are 0 outside the mask and d, w are loaded as 0 there, so only CE needs an explicit mask
        if DO_I:
            a_i += p * t
        if DO_SP:
            a_sp += p
        if DO_SP2:
            a_sp2 += p * p
        if DO_ST:
            a_st += t
        if DO_ST2:
            a_st2 += t * t
        if DO_CE:
            if ACT == ACT_SOFTMAX:
                ce = -t * logp
            else:  # BCE with logits, stable form max(z, 0) - z t + log1p(exp(-|z|))
                ce = tl.maximum(z, 0.0) - z * t + _log1p(tl.exp(-tl.abs(z)))
            a_ce += tl.where(m2, ce, 0.0)
        if DO_SURF:
            r = (1.0 - t - p) * d
            a_surf += r * r
        if DO_D2:
            a_d2 += d * d
        if DO_DP:
            a_dp += d * p
        if DO_HAUS:
            df = t - p
            a_haus += df * df * w
    cmask = cls < C
    if ATOMIC:
        base = (b * C + cls.to(tl.int64)) * NK
    else:
        base = ((b * n_prog + pid) * C + cls.to(tl.int64)) * NK
    _store_stat(out_ptr, base, S_I, a_i, cmask, DO_I, ATOMIC)
    _store_stat(out_ptr, base, S_SP, a_sp, cmask, DO_SP, ATOMIC)
    _store_stat(out_ptr, base, S_SP2, a_sp2, cmask, DO_SP2, ATOMIC)
    _store_stat(out_ptr, base, S_ST, a_st, cmask, DO_ST, ATOMIC)
    _store_stat(out_ptr, base, S_ST2, a_st2, cmask, DO_ST2, ATOMIC)
    _store_stat(out_ptr, base, S_CE, a_ce, cmask, DO_CE, ATOMIC)
    _store_stat(out_ptr, base, S_SURF, a_surf, cmask, DO_SURF, ATOMIC)
    _store_stat(out_ptr, base, S_D2, a_d2, cmask, DO_D2, ATOMIC)
    _store_stat(out_ptr, base, S_DP, a_dp, cmask, DO_DP, ATOMIC)
    _store_stat(out_ptr, base, S_HAUS, a_haus, cmask, DO_HAUS, ATOMIC)


@triton.jit
def _reduce_partials_kernel(part_ptr, out_ptr, n_prog, M, BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr):
    """Second stage: reads ``partials (B, n_prog, M)``, writes ``out (B, M)`` summed over programs in fixed order."""
    b = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    cmask = cols < M
    acc = tl.zeros([BLOCK_M], tl.float32)
    base = part_ptr + b * n_prog * M
    for r0 in range(0, n_prog, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        m = (rows < n_prog)[:, None] & cmask[None, :]
        tile = tl.load(base + rows.to(tl.int64)[:, None] * M + cols[None, :], mask=m, other=0.0)
        acc += tl.sum(tile, axis=0)
    tl.store(out_ptr + b * M + cols, acc, mask=cmask)


@triton.jit
def _voxel_stats_bwd_kernel(gs_ptr, z_ptr, t_ptr, d_ptr, dp_ptr, g_ptr, C, N, label_offset, tiles,
                            NEED: tl.constexpr, ACT: tl.constexpr, LABELS: tl.constexpr, HAS_DP: tl.constexpr,
                            C_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """Gradient pass.

    Reads ``grad_stats (B, C, K)`` and the same inputs as the statistics pass; writes ``dL/dlogits (B, C, N)`` in
    the dtype of ``g_ptr`` (the logits' dtype).  ``NEED`` holds only the stats that depend on P.
    """
    pid = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    cls = tl.arange(0, C_PAD)
    cmask = cls < C
    gbase = gs_ptr + (b * C + cls.to(tl.int64)) * NK
    # per-class coefficients dL/dS_k, broadcast over voxels; read on the device, so no host sync
    c_i = tl.load(gbase + S_I, mask=cmask, other=0.0).to(tl.float32)[:, None]
    c_sp = tl.load(gbase + S_SP, mask=cmask, other=0.0).to(tl.float32)[:, None]
    c_sp2 = tl.load(gbase + S_SP2, mask=cmask, other=0.0).to(tl.float32)[:, None]
    c_ce = tl.load(gbase + S_CE, mask=cmask, other=0.0).to(tl.float32)[:, None]
    c_surf = tl.load(gbase + S_SURF, mask=cmask, other=0.0).to(tl.float32)[:, None]
    c_dp = tl.load(gbase + S_DP, mask=cmask, other=0.0).to(tl.float32)[:, None]
    c_haus = tl.load(gbase + S_HAUS, mask=cmask, other=0.0).to(tl.float32)[:, None]
    LOAD_D: tl.constexpr = (M_DTM_P & NEED) != 0
    row = (b * C + cls.to(tl.int64)) * N
    for it in range(0, tiles):
        offs = (pid * tiles + it) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
        m2, z, p, logp, t, d, w = _tile(z_ptr, t_ptr, d_ptr, dp_ptr, b, C, N, label_offset, offs, cls,
                                        ACT, LABELS, LOAD_D, HAS_DP, False)
        g = tl.zeros([C_PAD, BLOCK_N], tl.float32)  # dL/dP
        if (M_I & NEED) != 0:
            g += c_i * t
        if (M_SP & NEED) != 0:
            g += c_sp
        if (M_SP2 & NEED) != 0:
            g += 2.0 * c_sp2 * p
        if (M_SURF & NEED) != 0:
            g -= 2.0 * c_surf * (d * d) * (1.0 - t - p)
        if (M_DP & NEED) != 0:
            g += c_dp * d
        if (M_HAUS & NEED) != 0:
            g -= 2.0 * c_haus * (t - p) * w
        if ACT == ACT_SOFTMAX:
            dz = p * (g - tl.sum(p * g, axis=0)[None, :])
        elif ACT == ACT_SIGMOID:
            dz = g * p * (1.0 - p)
        else:
            dz = g
        if (M_CE & NEED) != 0:
            if ACT == ACT_SOFTMAX:
                dz += p * tl.sum(c_ce * t, axis=0)[None, :] - c_ce * t
            else:
                dz += c_ce * (p - t)
        off2 = row[:, None] + offs[None, :]
        tl.store(g_ptr + off2, dz.to(g_ptr.dtype.element_ty), mask=m2)


# --------------------------------------------------------------------------------------------------------------
# Launch configuration.
# --------------------------------------------------------------------------------------------------------------

def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def launch_config(B: int, C: int, N: int, device: torch.device, block_n: Optional[int] = None,
                  tiles: Optional[int] = None):
    """``(C_PAD, BLOCK_N, tiles per program, programs per batch item, num_warps)``.

    On a GPU a tile holds 1024 elements (C_PAD x BLOCK_N) at 4 warps, 8 elements a thread.  The statistics pass
    keeps up to ten fp32 accumulators of the tile's size in registers; measured with ptxas for sm_90 (C_PAD = 4,
    fp32 logits, int64 labels) this gives 106 registers for Dice-CE + GSL and 154 with all ten stats, no spills,
    i.e. 4 resp. 3 resident programs (4096 resp. 3072 elements in flight) per SM; the gradient pass needs 80
    registers (6 programs per SM).  Larger tiles (2048 at 8 warps) fit fewer elements per SM, smaller ones make
    loads too short.  The grid is about 8 programs per SM: two waves at that occupancy, a few hundred partial
    sums to reduce.  Under the interpreter each program runs serially in numpy, so there fewer, larger tiles are
    faster.  (Not yet tuned on a GPU: these are register-count choices, no timing was possible here.)
    """
    c_pad = triton.next_power_of_2(max(C, 1))
    if block_n is None:
        cap = 1024 if device.type == "cuda" else 16384
        block_n = max(16, min(cap // c_pad, triton.next_power_of_2(max(N, 1))))
    n_tiles = triton.cdiv(N, block_n)
    if tiles is None:
        target = 8 * _sm_count(device) if device.type == "cuda" else 1
        progs = max(1, min(n_tiles, triton.cdiv(target, B)))
        tiles = triton.cdiv(n_tiles, progs)
    progs = max(1, triton.cdiv(n_tiles, tiles))
    num_warps = 4 if c_pad * block_n <= 1024 else 8
    return c_pad, block_n, tiles, progs, num_warps


# --------------------------------------------------------------------------------------------------------------
# Launch.
# --------------------------------------------------------------------------------------------------------------

def _flat_inputs(logits, target, dtm, dtm_pred):
    B, C = logits.shape[:2]
    N = logits[0, 0].numel() if logits.numel() else 0
    z = logits.contiguous()
    labels = not target.dtype.is_floating_point
    t = target.contiguous()
    if t.dtype == torch.bool:
        t = t.view(torch.uint8)
    d = None if dtm is None else dtm.contiguous()
    dp = None if dtm_pred is None else dtm_pred.contiguous()
    return B, C, N, z, t, labels, d, dp


def voxel_stats_forward(logits, target, dtm, dtm_pred, spec: StatSpec, *, use_atomics: bool = False,
                        block_n: Optional[int] = None, tiles: Optional[int] = None) -> torch.Tensor:
    """Statistics pass on the Triton kernels: ``(B, C, K)`` fp32 sums (see the module docstring).

    ``block_n`` / ``tiles`` override the launch configuration (tests use them to exercise multi-tile programs).
    fp64 logits are computed on the PyTorch host path, in fp64.
    """
    if logits.dtype == torch.float64:
        return forward_host(logits, target, dtm, dtm_pred, spec)
    B, C, N, z, t, labels, d, dp = _flat_inputs(logits, target, dtm, dtm_pred)
    c_pad, block_n, tiles, progs, num_warps = launch_config(B, C, N, logits.device, block_n, tiles)
    need = spec.mask
    has_d = d is not None
    if B == 0 or C == 0:
        return torch.zeros(B, C, layout.K, dtype=torch.float32, device=logits.device)
    d_arg = d if has_d else z
    dp_arg = dp if dp is not None else d_arg
    act = layout.ACT_CODE[spec.activation]
    if use_atomics:
        out = torch.zeros(B, C, layout.K, dtype=torch.float32, device=logits.device)
        dest = out
    else:
        out = torch.empty(B, C, layout.K, dtype=torch.float32, device=logits.device)
        dest = torch.empty(B, progs, C, layout.K, dtype=torch.float32, device=logits.device)
    wrap_triton(_voxel_stats_fwd_kernel)[(progs, B)](
        z, t, d_arg, dp_arg, dest, C, N, spec.label_offset, tiles, progs,
        NEED=need, ACT=act, LABELS=labels, HAS_DP=dp is not None, ATOMIC=bool(use_atomics),
        C_PAD=c_pad, BLOCK_N=block_n, num_warps=num_warps)
    if not use_atomics:
        M = C * layout.K
        block_m = min(256, triton.next_power_of_2(M))
        block_r = max(1, min(64, triton.next_power_of_2(progs), 4096 // block_m))
        wrap_triton(_reduce_partials_kernel)[(B, triton.cdiv(M, block_m))](
            dest, out, progs, M, BLOCK_R=block_r, BLOCK_M=block_m, num_warps=4)
    return out


def voxel_stats_backward(grad_stats, logits, target, dtm, dtm_pred, spec: StatSpec, *,
                         block_n: Optional[int] = None, tiles: Optional[int] = None) -> torch.Tensor:
    """Gradient pass on the Triton kernels: ``dL/dlogits`` (logits' shape and dtype) from ``grad_stats`` (B, C, K).

    fp64 logits are computed on the PyTorch host path, in fp64.
    """
    if logits.dtype == torch.float64:
        return backward_host(grad_stats, logits, target, dtm, dtm_pred, spec)
    B, C, N, z, t, labels, d, dp = _flat_inputs(logits, target, dtm, dtm_pred)
    c_pad, block_n, tiles, progs, num_warps = launch_config(B, C, N, logits.device, block_n, tiles)
    need = spec.mask & layout.mask_of(layout.P_STATS)
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    if grad.numel() == 0:
        return grad
    gs = grad_stats.to(torch.float32).contiguous()
    d_arg = d if d is not None else z
    dp_arg = dp if dp is not None else d_arg
    wrap_triton(_voxel_stats_bwd_kernel)[(progs, B)](
        gs, z, t, d_arg, dp_arg, grad, C, N, spec.label_offset, tiles,
        NEED=need, ACT=layout.ACT_CODE[spec.activation], LABELS=labels, HAS_DP=dp is not None,
        C_PAD=c_pad, BLOCK_N=block_n, num_warps=num_warps)
    return grad


# --------------------------------------------------------------------------------------------------------------
# torch.library registration: torch.ops.fastgsl.voxel_stats_fwd / voxel_stats_bwd.
# --------------------------------------------------------------------------------------------------------------

def _fwd_op(logits: torch.Tensor, target: torch.Tensor, dtm: Optional[torch.Tensor],
            dtm_pred: Optional[torch.Tensor], needs_mask: int, activation: str, label_offset: int,
            use_atomics: bool) -> torch.Tensor:
    return voxel_stats_forward(logits, target, dtm, dtm_pred,
                               StatSpec.from_mask(needs_mask, activation, label_offset), use_atomics=use_atomics)


def _bwd_op(grad_stats: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, dtm: Optional[torch.Tensor],
            dtm_pred: Optional[torch.Tensor], needs_mask: int, activation: str, label_offset: int) -> torch.Tensor:
    return voxel_stats_backward(grad_stats, logits, target, dtm, dtm_pred,
                                StatSpec.from_mask(needs_mask, activation, label_offset))


if INTERPRETER:
    voxel_stats_fwd_op = custom_op("fastgsl::voxel_stats_fwd", _fwd_op, mutates_args=())
    voxel_stats_bwd_op = custom_op("fastgsl::voxel_stats_bwd", _bwd_op, mutates_args=())

    @voxel_stats_fwd_op.register_fake
    def _(logits, target, dtm, dtm_pred, needs_mask, activation, label_offset, use_atomics):
        return logits.new_empty((logits.shape[0], logits.shape[1], layout.K), dtype=compute_dtype(logits.dtype))

    @voxel_stats_bwd_op.register_fake
    def _(grad_stats, logits, target, dtm, dtm_pred, needs_mask, activation, label_offset):
        return torch.empty_like(logits, memory_format=torch.contiguous_format)
else:
    voxel_stats_fwd_op = triton_op("fastgsl::voxel_stats_fwd", _fwd_op, mutates_args=())
    voxel_stats_bwd_op = triton_op("fastgsl::voxel_stats_bwd", _bwd_op, mutates_args=())


__all__ = ["voxel_stats_forward", "voxel_stats_backward", "launch_config", "voxel_stats_fwd_op",
           "voxel_stats_bwd_op", "INTERPRETER"]
