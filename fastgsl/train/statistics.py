"""Statistics of the comparison: bootstrap confidence intervals, paired per-case differences, the Wilcoxon
signed-rank test, and the three-way verdict on a claim.

The unit of every statistic is the held-out case.  With several training seeds (``--seeds``) each loss is
evaluated on the same cases once per seed; the two losses of a comparison are paired per ``(seed, fold, case)``
and the paired differences are then averaged over the seeds of each ``(fold, case)``.  The same case under two
seeds shares its image and label, so it is one observation, not two: the n of an interval or a test is the number
of cases, and a second seed makes each case's value less noisy rather than adding cases.  A loss's own mean is
handled the same way (per case, the mean over seeds).

- **Bootstrap CI** of a mean: percentile bootstrap, ``N_RESAMPLES`` = 10000 resamples of the cases with
  replacement drawn by ``numpy.random.default_rng(BOOTSTRAP_SEED)``, interval
  ``[q((1 - confidence) / 2), q((1 + confidence) / 2)]`` of the resampled means (``numpy.quantile``, linear
  interpolation), ``confidence`` = 0.95.  Deterministic: the same values give the same interval.
- **Wilcoxon**: two-sided signed-rank test of the paired differences (``scipy.stats.wilcoxon``, its defaults:
  zero differences dropped, exact distribution for small n without ties, normal approximation otherwise).
  Undefined - reported as n/a with the reason - when every difference is zero, when fewer than two cases are
  paired, or when a difference is not finite.
- **Verdict** on a claim "GSL is better than the baseline on this metric" (``Claim``): with ``d`` = GSL minus
  baseline per case and its bootstrap CI ``[lo, hi]``, the improvement is ``-d`` for a metric where lower is
  better (HD95, ASD) and ``d`` where higher is better (Dice).  The claim is *supported* when the CI of the
  improvement lies entirely above ``-margin``, *contradicted* when it lies entirely below ``-margin``, and
  *inconclusive* otherwise.  ``margin`` = 0 is a superiority claim (the CI excludes 0 in the claim's direction);
  a positive margin is a non-inferiority claim ("comparable": GSL at most ``margin`` worse).  With fewer than
  ``MIN_CASES`` = 6 cases the verdict is inconclusive whatever the interval: below 6 pairs even a result in the
  same direction on every case cannot reach p < 0.05 in the two-sided exact signed-rank test (the smallest p
  with n pairs is 2 / 2^n), and a percentile bootstrap over so few values covers far less than its nominal 95%.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 10000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
MIN_CASES = 6
VERDICTS = ("supported", "contradicted", "inconclusive")


def bootstrap_mean_ci(values, *, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = BOOTSTRAP_SEED) -> tuple:
    """Percentile-bootstrap ``(lo, hi)`` of the mean of ``values`` (1-D); ``(nan, nan)`` for fewer than 2 values
    or any non-finite value (a NaN or an infinite distance makes the mean's interval undefined, not narrow)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"bootstrap_mean_ci expects a 1-D sequence of values, got shape {v.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if v.size < 2 or not np.all(np.isfinite(v)):
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_resamples, v.size))].mean(axis=1)
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return (float(lo), float(hi))


def _case_key(r: dict) -> tuple:
    return (r.get("fold"), r["case"])


def per_case_means(rows: list, metric: str) -> dict:
    """``{(fold, case): mean over seeds of rows[metric]}`` in first-seen order (one row per seed and case)."""
    acc = {}
    for r in rows:
        acc.setdefault(_case_key(r), []).append(float(r[metric]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def paired_differences(a_rows: list, b_rows: list, metric: str) -> dict:
    """``{(fold, case): mean over seeds of (a - b)}``, pairing ``a_rows`` and ``b_rows`` per (seed, fold, case).

    Raises ``ValueError`` naming the pairs present on one side only (a run that evaluated other cases cannot be
    paired), or a (seed, fold, case) listed twice on one side."""
    def index(rows, side):
        out = {}
        for r in rows:
            k = (r.get("seed"), r.get("fold"), r["case"])
            if k in out:
                raise ValueError(f"paired_differences: (seed, fold, case) {k} appears twice in {side}")
            out[k] = float(r[metric])
        return out
    a, b = index(a_rows, "the first rows"), index(b_rows, "the second rows")
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys(), key=str), sorted(b.keys() - a.keys(), key=str)
        raise ValueError(f"paired_differences: the two sides evaluated different (seed, fold, case) sets; only in "
                         f"the first: {only_a[:5]}{'...' if len(only_a) > 5 else ''}; only in the second: "
                         f"{only_b[:5]}{'...' if len(only_b) > 5 else ''}")
    acc = {}
    for k in a:
        acc.setdefault(k[1:], []).append(a[k] - b[k])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def wilcoxon_p(differences) -> tuple:
    """``(p, reason)``: two-sided Wilcoxon signed-rank p-value of paired differences; ``(nan, why)`` when the
    test is undefined; ``reason`` is ``""`` when ``p`` is defined."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return math.nan, f"{d.size} paired case(s)"
    if not np.all(np.isfinite(d)):
        return math.nan, "a paired difference is not finite"
    if not np.any(d != 0):
        return math.nan, "every paired difference is zero"
    from scipy.stats import wilcoxon
    return float(wilcoxon(d).pvalue), ""


@dataclass(frozen=True)
class Claim:
    """``metric`` of GSL is better (``better``: "lower" or "higher") than a baseline's, or - with ``margin`` > 0 -
    at most ``margin`` worse (a non-inferiority claim)."""
    metric: str
    better: str
    margin: float = 0.0

    def __post_init__(self):
        if self.better not in ("lower", "higher"):
            raise ValueError(f"Claim.better must be 'lower' or 'higher', got {self.better!r}")
        if not self.margin >= 0:
            raise ValueError(f"Claim.margin must be >= 0, got {self.margin}")


def verdict(claim: Claim, ci: tuple, n: int) -> tuple:
    """``(verdict, reason)`` of ``claim`` from the CI ``(lo, hi)`` of GSL minus baseline over ``n`` cases."""
    lo, hi = ci
    if n < MIN_CASES:
        return "inconclusive", f"only {n} case(s); a verdict needs at least {MIN_CASES}"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive", "the interval is undefined (a value is not finite)"
    sign = 1.0 if claim.better == "higher" else -1.0
    imp_lo, imp_hi = sorted((sign * lo, sign * hi))
    bound = -claim.margin
    what = "0" if claim.margin == 0 else f"the margin ({claim.margin:g} worse)"
    if imp_lo > bound:
        return "supported", f"the CI excludes {what} in the claim's direction"
    if imp_hi < bound:
        return "contradicted", f"the CI excludes {what} against the claim"
    return "inconclusive", f"the CI contains {what}"
