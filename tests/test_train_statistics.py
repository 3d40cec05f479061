"""The statistics of the training report (fastgsl.train.statistics, fastgsl.train.report): bootstrap intervals,
paired per-case differences, the Wilcoxon test, the three-way verdicts and the table; ``--seeds`` and
``--preset validate`` parsing.  No training: per-case results are constructed here."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats", reason="the Wilcoxon test of the report uses scipy")

from fastgsl.train import report, statistics  # noqa: E402
from fastgsl.train.cli import parse_config  # noqa: E402


# -- bootstrap ------------------------------------------------------------------------------------------------------
def test_bootstrap_ci_is_the_percentile_bootstrap_computed_directly():
    v = np.random.default_rng(5).gamma(2.0, 3.0, size=13)
    lo, hi = statistics.bootstrap_mean_ci(v)
    rng = np.random.default_rng(statistics.BOOTSTRAP_SEED)
    means = np.empty(statistics.N_RESAMPLES)
    idx = rng.integers(0, v.size, size=(statistics.N_RESAMPLES, v.size))
    for b in range(statistics.N_RESAMPLES):  # one resample at a time, as the definition reads
        means[b] = np.mean([v[i] for i in idx[b]])
    assert (lo, hi) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), rel=1e-12)
    assert lo < v.mean() < hi
    assert statistics.N_RESAMPLES == 10000


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap():
    v = np.random.default_rng(11).normal(4.0, 2.0, size=20)
    lo, hi = statistics.bootstrap_mean_ci(v)
    ref = scipy_stats.bootstrap((v,), np.mean, n_resamples=10000, method="percentile", confidence_level=0.95,
                                random_state=np.random.default_rng(1)).confidence_interval
    se = v.std(ddof=1) / math.sqrt(v.size)
    # different random resamples: the ends agree to Monte Carlo error, a small fraction of the standard error
    assert abs(lo - ref.low) < 0.1 * se and abs(hi - ref.high) < 0.1 * se


def test_bootstrap_ci_deterministic_and_undefined_cases():
    v = [1.0, 2.5, 0.5, 4.0, 3.0, 2.0, 9.0]
    assert statistics.bootstrap_mean_ci(v) == statistics.bootstrap_mean_ci(list(v))
    assert statistics.bootstrap_mean_ci(v, seed=1) != statistics.bootstrap_mean_ci(v)  # the seed is used
    assert all(math.isnan(x) for x in statistics.bootstrap_mean_ci([3.0]))
    assert all(math.isnan(x) for x in statistics.bootstrap_mean_ci([1.0, math.nan, 2.0]))
    assert all(math.isnan(x) for x in statistics.bootstrap_mean_ci([1.0, math.inf, 2.0]))
    assert statistics.bootstrap_mean_ci([2.0] * 6) == (2.0, 2.0)
    with pytest.raises(ValueError, match="1-D"):
        statistics.bootstrap_mean_ci(np.ones((3, 2)))


# -- pairing and Wilcoxon -------------------------------------------------------------------------------------------
def _rows(loss, values, seeds=(0,), cls="Liver", metric="hd95", fold=0):
    """One row per (seed, case); ``values[s][i]`` is the metric of case i under seed index s."""
    out = []
    for s, seed in enumerate(seeds):
        for i, x in enumerate(values[s]):
            out.append({"loss": loss, "schedule": None, "seed": seed, "fold": fold, "case": f"case_{i:02d}",
                        "class": cls, "dice": 0.9, "hd95": 3.0, "asd": 1.0, metric: float(x)})
    return out


def test_paired_differences_pair_per_seed_and_case_then_average_over_seeds():
    g = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 5.0]])
    b = np.array([[1.5, 1.0, 3.0], [3.0, 4.0, 4.0]])
    ga, ba = _rows("gsl", g, seeds=(0, 1)), _rows("dice_ce", b, seeds=(0, 1))
    d = statistics.paired_differences(ga, list(reversed(ba)), "hd95")  # order of rows does not matter
    assert list(d) == [(0, "case_00"), (0, "case_01"), (0, "case_02")]
    np.testing.assert_allclose(list(d.values()), (g - b).mean(axis=0))
    np.testing.assert_allclose(list(statistics.per_case_means(ga, "hd95").values()), g.mean(axis=0))
    with pytest.raises(ValueError, match="different .seed, fold, case. sets"):
        statistics.paired_differences(ga, ba[:-1], "hd95")
    with pytest.raises(ValueError, match="appears twice"):
        statistics.paired_differences(ga + ga[:1], ba, "hd95")


def test_wilcoxon_matches_scipy_and_says_why_when_undefined():
    a = np.array([3.1, 4.0, 2.2, 5.6, 3.3, 4.8, 2.9, 6.1, 3.0])
    b = np.array([3.5, 4.1, 2.0, 6.9, 3.9, 5.5, 3.6, 6.0, 3.0])  # one zero difference, dropped as scipy does
    p, why = statistics.wilcoxon_p(a - b)
    assert why == "" and p == pytest.approx(scipy_stats.wilcoxon(a, b).pvalue, rel=1e-12)
    p, why = statistics.wilcoxon_p(np.zeros(8))
    assert math.isnan(p) and "zero" in why
    p, why = statistics.wilcoxon_p([0.3])
    assert math.isnan(p) and "1 paired" in why
    p, why = statistics.wilcoxon_p([0.3, math.nan, 1.0])
    assert math.isnan(p) and "not finite" in why


# -- verdicts -------------------------------------------------------------------------------------------------------
N = 12
NOISE = np.random.default_rng(3).normal(0.0, 1.0, size=N)


def _experiment(hd95, asd, dice):
    """Per-case results of Dice-CE, BL and GSL: ``hd95[k]`` etc. are each loss's per-case values."""
    rows = []
    for k in ("dice_ce", "bl", "gsl"):
        for i in range(N):
            rows.append({"loss": k, "schedule": None if k == "dice_ce" else "Linear", "seed": 42, "fold": 0,
                         "case": f"case_{i:02d}", "class": "Liver", "dice": float(dice[k][i]),
                         "hd95": float(hd95[k][i]), "asd": float(asd[k][i])})
    return rows


def _by(vs):
    return {(v["metric"], v["baseline"]): v for v in vs}


def test_each_verdict_in_each_claims_direction():
    base = 6.0 + NOISE
    hd95 = {"dice_ce": base, "bl": base, "gsl": base - 1.0 + 0.1 * NOISE[::-1]}    # lower than Dice-CE: better
    hd95["bl"] = base - 3.0                                                         # BL far lower: GSL worse
    asd = {"dice_ce": 2.0 + 0.2 * NOISE, "gsl": 2.5 + 0.2 * NOISE}                  # GSL higher: worse
    asd["bl"] = 2.5 + 0.2 * NOISE[::-1]                                             # no systematic difference
    dice = {"dice_ce": 0.92 + 0.01 * NOISE, "bl": 0.95 + 0.01 * NOISE}
    dice["gsl"] = dice["dice_ce"] - 0.004                                           # 0.004 below: comparable
    vs = _by(report.verdicts(_experiment(hd95, asd, dice), "LiTS", ["Liver"]))
    assert vs["hd95", "Dice-CE"]["verdict"] == "supported"
    assert vs["hd95", "Dice-CE"]["ci"][1] < 0 and vs["hd95", "Dice-CE"]["wins"] == N
    assert vs["hd95", "BL"]["verdict"] == "contradicted" and vs["hd95", "BL"]["ci"][0] > 0
    assert vs["asd", "Dice-CE"]["verdict"] == "contradicted"                      # higher ASD is worse
    assert vs["asd", "BL"]["verdict"] == "inconclusive"
    lo, hi = vs["asd", "BL"]["ci"]
    assert lo < 0 < hi
    assert vs["dice", "Dice-CE"]["verdict"] == "supported"                        # within the 0.01 margin
    assert vs["dice", "BL"]["verdict"] == "contradicted"                          # about 0.034 below
    d = np.asarray(hd95["gsl"]) - np.asarray(hd95["dice_ce"])
    assert vs["hd95", "Dice-CE"]["mean_diff"] == pytest.approx(d.mean())
    assert vs["hd95", "Dice-CE"]["ci"] == statistics.bootstrap_mean_ci(d)
    assert vs["hd95", "Dice-CE"]["p"] == pytest.approx(scipy_stats.wilcoxon(hd95["gsl"], hd95["dice_ce"]).pvalue)
    assert vs["hd95", "Dice-CE"]["paper"].endswith("(agrees)")  # the paper's 8.905 vs 10.87


def test_higher_dice_is_better_and_identical_results_are_inconclusive():
    c = statistics.Claim("dice", "higher")
    assert statistics.verdict(c, (0.01, 0.03), N)[0] == "supported"
    assert statistics.verdict(c, (-0.03, -0.01), N)[0] == "contradicted"
    h = statistics.Claim("hd95", "lower")
    assert statistics.verdict(h, (0.01, 0.03), N)[0] == "contradicted"
    assert statistics.verdict(h, (-0.03, -0.01), N)[0] == "supported"
    assert statistics.verdict(h, (0.0, 0.0), N)[0] == "inconclusive"             # excluding 0 is strict
    v = 3.0 + NOISE
    vs = report.verdicts(_experiment({k: v for k in ("dice_ce", "bl", "gsl")}, {k: v for k in ("dice_ce", "bl", "gsl")},
                                     {k: 0.9 + 0.01 * NOISE for k in ("dice_ce", "bl", "gsl")}), "LiTS", ["Liver"])
    for x in vs:
        if x["metric"] != "dice":
            assert x["verdict"] == "inconclusive" and math.isnan(x["p"]) and "zero" in x["p_reason"]
        else:  # identical Dice is comparable: 0 lies above the 0.01 margin
            assert x["verdict"] == "supported"


def test_too_few_cases_or_undefined_interval_is_inconclusive():
    h = statistics.Claim("hd95", "lower")
    v, why = statistics.verdict(h, (-3.0, -2.0), statistics.MIN_CASES - 1)
    assert v == "inconclusive" and "at least 6" in why
    assert statistics.verdict(h, (-3.0, -2.0), statistics.MIN_CASES)[0] == "supported"
    assert statistics.verdict(h, (math.nan, math.nan), N)[0] == "inconclusive"
    with pytest.raises(ValueError, match="better"):
        statistics.Claim("hd95", "smaller")


def _spec():
    return SimpleNamespace(class_names=["Liver"], dataset="LiTS-like", paper="LiTS")


def test_report_tables_format_and_determinism():
    rows = _experiment({"dice_ce": 6.0 + NOISE, "bl": 7.0 + NOISE, "gsl": 5.0 + NOISE},
                       {"dice_ce": 2.0 + NOISE, "bl": 2.0 + NOISE[::-1], "gsl": 2.0 + NOISE},
                       {k: 0.9 + 0.01 * NOISE for k in ("dice_ce", "bl", "gsl")})
    md, vs = report.build_markdown(rows, _spec(), title="t", notes=["n"])
    md2, vs2 = report.build_markdown([dict(r) for r in rows], _spec(), title="t", notes=["n"])
    assert md == md2 and vs == vs2
    assert "not supported" not in md.lower()
    assert len(vs) == 6  # 3 claims x 2 baselines
    table = report.verdict_table(vs).splitlines()
    assert table[0].count("|") == table[1].count("|") == 9
    assert all(line.count("|") >= 9 for line in table[2:]) and len(table) == 2 + 6
    hd = next(line for line in table if "HD95 is lower than Dice-CE" in line)
    assert "| 12 | -1.0000 [" in hd and "12/12" in hd and "**supported**" in hd
    asd = next(line for line in table if "ASD is lower than Dice-CE" in line)
    assert "n/a (every paired difference is zero)" in asd and "**inconclusive**" in asd
    ci = report.ci_table(report.table1_rows(rows), ["Liver"]).splitlines()
    assert ci[0].startswith("| Task | Loss | cases |") and len(ci) == 2 + 3
    lo, hi = statistics.bootstrap_mean_ci(5.0 + NOISE)
    assert ci[4].startswith("|  | GSL | 12 | ") and f"| {(5.0 + NOISE).mean():.4f} [{lo:.4f}, {hi:.4f}] |" in ci[4]
    assert f"{statistics.N_RESAMPLES} resamples" in md


def test_seed_column_pairs_two_seeds_as_one_case():
    g = np.array([1.0 + NOISE, 3.0 + NOISE + 0.5 * NOISE[::-1]])
    b = np.array([2.0 + NOISE, 2.0 + NOISE])
    rows = _rows("gsl", g, seeds=(42, 43)) + _rows("dice_ce", b, seeds=(42, 43))
    hd = next(x for x in report.verdicts(rows, "LiTS", ["Liver"]) if x["metric"] == "hd95")
    per_case = (g - b).mean(axis=0)  # seed 42: -1 on every case, seed 43: about +1; one value per case
    assert hd["n"] == N and hd["mean_diff"] == pytest.approx(per_case.mean())
    assert hd["ci"] == statistics.bootstrap_mean_ci(per_case)
    assert (hd["verdict"], hd["reason"]) == statistics.verdict(statistics.Claim("hd95", "lower"), hd["ci"], N)


# -- --seeds and --preset validate ----------------------------------------------------------------------------------
def test_main_job_unchanged_and_validate_preset_parses():
    main = parse_config([])
    assert main.training_seeds == [42] and main.epochs == 40 and main.num_cases == 24 and main.fold_ids == [0]
    assert main.losses == ["dice_ce", "bl", "gsl"] and main.iters_per_epoch == 25 and main.patch_size == [32, 32, 16]
    val = parse_config(["--preset", "validate"])
    assert val.training_seeds == [42, 43, 44] and val.epochs > main.epochs and val.losses == main.losses
    assert val.threads == main.threads == 1
    held_out = lambda c: c.num_cases // c.folds * len(c.fold_ids)  # noqa: E731
    assert held_out(val) == 32 > held_out(main) == 12
    assert parse_config(["--preset", "validate", "--seeds", "0,1", "2"]).training_seeds == [0, 1, 2]
    assert parse_config(["--seeds", "7"]).training_seeds == [7]
    with pytest.raises(ValueError, match="distinct"):
        parse_config(["--seeds", "1,1"])
    with pytest.raises(SystemExit, match="integers"):
        parse_config(["--seeds", "a"])
