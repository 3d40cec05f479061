"""Exact per-segment quantiles without a global sort: per-segment selection on the CPU, a batched radix selection
on the float bits on other devices."""
from __future__ import annotations

import torch

from fastgsl.ops import nearest

# (shift, width) of the digits of a non-negative float32's 31 value bits, most significant first
_DIGITS = ((20, 11), (10, 10), (0, 10))


def segment_quantile(values: torch.Tensor, counts: torch.Tensor, q: float,
                     seg: torch.Tensor | None = None, *, method: str | None = None,
                     zeros: torch.Tensor | None = None) -> torch.Tensor:
    """Linear-interpolated ``q``-quantile (numpy's default ``method="linear"``) of each of consecutive segments of
    ``values`` (non-negative float32, +inf allowed), segment ``s`` holding ``counts[s]`` values.  Returns float64
    per segment, nan for empty segments.  ``seg`` (optional) is the segment index of every value.

    No sort of the values.  The ``floor(r)``-th order statistic of each segment is found by

    * ``method="select"`` (default on the CPU): ``torch.kthvalue`` on each segment's slice, a linear-time selection
      (a Python loop over the segments, which are few: two per item and class);
    * ``method="radix"`` (default elsewhere): a batched radix selection on the IEEE bits (monotone for non-negative
      floats), 11 + 10 + 10 bits in three passes, the histograms counted with ``bincount`` (integer, so
      deterministic on every device), with no per-segment loop;

    and the next order statistic is either a tie (counted) or the segment minimum above it.  Both are exact, so
    they return the same bits.

    ``zeros`` (optional, int ``(S,)``): segment ``s`` holds ``zeros[s]`` more values equal to 0 that are not stored
    (the ``"paper"`` Hausdorff distance's voxels inside the other mask); the quantile is that of the whole
    segment, ``counts[s] + zeros[s]`` values, as if they were stored."""
    if values.dtype != torch.float32:
        raise TypeError(f"values must be float32, got {values.dtype}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    dev = values.device
    counts = counts.to(device=dev, dtype=torch.int64)
    S = counts.numel()
    out = torch.full((S,), float("nan"), dtype=torch.float64, device=dev)
    if S == 0 or (values.numel() == 0 and zeros is None):
        return out
    if method is None:
        method = "select" if dev.type == "cpu" else "radix"
    if zeros is not None:
        zeros = zeros.to(device=dev, dtype=torch.int64)
        if method == "select":
            return _quantile_with_zeros(values, counts, zeros, q, out)
        # the radix selection reads segments through seg, in any order: the zeros can be appended
        if seg is None:
            seg = torch.repeat_interleave(torch.arange(S, device=dev), counts)
        values = torch.cat([values, values.new_zeros(int(zeros.sum()))])
        seg = torch.cat([seg, torch.repeat_interleave(torch.arange(S, device=dev), zeros)])
        counts = counts + zeros
    if S == 0 or values.numel() == 0:
        return out
    if seg is None and method != "select":
        seg = torch.repeat_interleave(torch.arange(S, device=dev), counts)
    k, w = order_rank(counts, q)
    if method == "select":
        v_lo, v_hi = _select(values, counts, k)
    elif method == "radix":
        v_lo = _radix_select(values.view(torch.int32).to(torch.int64), seg, k, S).view(torch.float32)
        v_hi = _next_order_statistic(values, seg, k, v_lo, S)
    else:
        raise ValueError(f"method must be 'select', 'radix' or None, got {method!r}")
    return _interpolate(v_lo, v_hi, w, counts, out)


def order_rank(n: torch.Tensor, q: float):
    """The lower order statistic ``k`` (0-based, int64) and the weight ``w`` (float64) of the next one that the
    linear-interpolated ``q``-quantile of ``n`` values reads: ``(n - 1) q = k + w``.  The one definition, for the
    selection here and for the k-d tree's quantile goal (``fastgsl.metrics.distances``), which must agree."""
    rank = (n - 1).clamp(min=0).to(torch.float64) * q
    k = rank.floor().to(torch.int64)
    return k, rank - k.to(torch.float64)


def _interpolate(v_lo, v_hi, w, counts, out):
    lo, hi = v_lo.to(torch.float64), v_hi.to(torch.float64)
    interp = torch.where((w > 0) & (hi != lo), lo + w * (hi - lo), lo)
    return torch.where(counts > 0, interp, out)


def _quantile_with_zeros(values, counts, zeros, q, out):
    """:func:`segment_quantile` by selection where segment ``s`` also holds ``zeros[s]`` unstored zeros, which
    (the values being >= 0) are its smallest: order statistic ``k`` is 0 for ``k < zeros[s]`` and the stored
    values' ``k - zeros[s]``-th beyond."""
    n = counts + zeros
    k, w = order_rank(n, q)
    lo_f, hi_f = _select(values, counts, (k - zeros).clamp(min=0))
    zero = torch.zeros_like(lo_f)
    v_lo = torch.where(k < zeros, zero, lo_f)
    v_hi = torch.where(k + 1 < zeros, zero, torch.where(k + 1 == zeros, lo_f, hi_f))
    return _interpolate(v_lo, v_hi, w, n, out)


def _select(values: torch.Tensor, counts: torch.Tensor, k: torch.Tensor):
    """The ``k[s]``-th and ``k[s] + 1``-th smallest (0-based) values of each consecutive segment (0 for an empty
    one; the second is +inf where the segment has no value past ``k[s]``): by the host library's selection on
    the CPU (one task per segment), else one ``kthvalue`` per segment slice."""
    if values.device.type == "cpu":
        found = nearest.segment_select(values, counts, k)
        if found is not None:
            return found
    lo = torch.zeros(counts.numel(), dtype=values.dtype, device=values.device)
    hi = torch.full_like(lo, float("inf"))
    start = 0
    for s, (n, ks) in enumerate(zip(counts.tolist(), k.tolist())):
        if n:
            v = values[start:start + n]
            lo[s] = v_lo = torch.kthvalue(v, ks + 1).values
            le = v <= v_lo
            if int(le.sum()) >= ks + 2:  # v_lo repeats past position k
                hi[s] = v_lo
            elif n > ks + 1:
                hi[s] = v[~le].min()
        start += n
    return lo, hi


def _next_order_statistic(values, seg, k, v_lo, S):
    """The ``k[s] + 1``-th smallest value per segment, given the ``k[s]``-th: equal to it when it is repeated past
    position ``k[s]``, else the smallest value above it (+inf if none)."""
    le = values <= v_lo[seg]
    n_le = torch.bincount(seg[le], minlength=S)
    above = torch.full((S,), float("inf"), dtype=torch.float32, device=values.device)
    gt = ~le
    above = above.scatter_reduce(0, seg[gt], values[gt], reduce="amin", include_self=True)
    return torch.where(n_le >= k + 2, v_lo, above)


def _radix_select(bits: torch.Tensor, seg: torch.Tensor, k: torch.Tensor, S: int) -> torch.Tensor:
    """The ``k[s]``-th smallest (0-based) of the non-negative int32-valued ``bits`` (as int64) of each segment,
    as int32.  Three passes; each histograms one digit of the candidates still sharing the chosen prefix."""
    prefix = torch.zeros(S, dtype=torch.int64, device=bits.device)
    k = k.clone()
    for i, (shift, width) in enumerate(_DIGITS):
        if i:  # keep only the candidates that share the prefix chosen so far
            keep = (bits >> (shift + width)) == prefix[seg]
            bits, seg = bits[keep], seg[keep]
        nb = 1 << width
        digit = (bits >> shift) & (nb - 1)
        cum = torch.bincount(seg * nb + digit, minlength=S * nb).view(S, nb).cumsum(1)
        d = (cum <= k[:, None]).sum(1).clamp(max=nb - 1)
        below = torch.where(d > 0, cum.gather(1, (d - 1).clamp(min=0)[:, None])[:, 0], 0)
        k = k - below
        prefix = (prefix << width) + d
    return prefix.to(torch.int32)


__all__ = ["segment_quantile"]
