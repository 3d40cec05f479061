"""The results: per-case CSV, Table 1 / Table 2 in the paper's layout, the paper's rows beside ours, each loss's
mean with a 95% bootstrap confidence interval, and a verdict on each of the paper's claims from the paired
per-case differences.

Means and standard deviations of the Table 1 layout are over every evaluated row (every seed, fold and case;
numpy's population std), as the paper reports them over its cross-validation predictions.  The intervals and the
verdicts take the held-out case as the unit (``fastgsl.train.statistics``: per case, the mean over seeds).  The
claims checked (paper, Results and Discussion): for each task class and each other loss of the run, GSL's HD95
is lower, its ASD is lower, and its Dice is comparable - read here as at most ``DICE_MARGIN`` = 0.01 below.
Each gets one verdict: supported, contradicted or inconclusive (``statistics.verdict``).  The paper publishes
means only, so beside each verdict is whether the paper's own Table 1 means point the claim's way.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from fastgsl.train import paper, statistics
from fastgsl.train.objectives import LOSS_LABELS

METRICS = ("dice", "hd95", "asd")
HEADER = "| Dataset | Task | {key} | Dice [↑] | Hausdorff 95 (mm) [↓] | Avg. Surface (mm) [↓] |"
DICE_MARGIN = 0.01  # how far below is still "comparable Dice" (the paper gives no number)
CSV_FIELDS = ("loss", "schedule", "seed", "fold", "case", "class", "dice", "hd95", "asd", "missed", "spurious",
              "missed_fraction", "spurious_fraction")


def write_csv(path: Path, rows: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in CSV_FIELDS})


def _fmt(mean: float, std: float) -> str:
    """The paper's style: 4 decimals below 10, 5 significant digits above (``12.366 (66.451)``)."""
    def one(x):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.4f}" if abs(x) < 10 else f"{x:.5g}" if abs(x) < 1e5 else f"{x:.3e}"
    return f"{one(mean)} ({one(std)})"


def stats(rows: list) -> dict:
    """``{metric: (mean, std, n)}`` over the rows."""
    out = {}
    for m in METRICS:
        v = np.array([r[m] for r in rows], dtype=np.float64)
        out[m] = (float(v.mean()), float(v.std()), int(v.size)) if v.size else (math.nan, math.nan, 0)
    return out


def table1_rows(rows: list) -> list:
    """Rows of Table 1: the region losses and, for boundary losses, their first schedule."""
    first = {}
    for r in rows:
        first.setdefault(r["loss"], r["schedule"])
    return [r for r in rows if r["schedule"] == first[r["loss"]]]


def grouped(rows: list, classes, key: str) -> dict:
    """``{class: {key value: [rows]}}`` keeping first-seen order."""
    out = {c: {} for c in classes}
    for r in rows:
        out[r["class"]].setdefault(r[key], []).append(r)
    return out


def markdown_table(rows: list, dataset: str, classes, key: str = "loss", key_title: str = "Loss") -> str:
    lines = [HEADER.format(key=key_title), "|---|---|---|---|---|---|"]
    for c, groups in grouped(rows, classes, key).items():
        for i, (k, rs) in enumerate(groups.items()):
            s = stats(rs)
            label = LOSS_LABELS.get(k, k) if key == "loss" else k
            lines.append(f"| {dataset if not lines[2:] else ''} | {c if i == 0 else ''} | {label} | "
                         + " | ".join(_fmt(*s[m][:2]) for m in METRICS) + " |")
    return "\n".join(lines)


def comparison_block(rows: list, dataset: str, classes, table: dict, key: str, key_title: str) -> str:
    """Our mean (std) next to the paper's row for the same task and loss / schedule."""
    lines = [f"| Task | {key_title} | Dice ours | Dice paper | HD95 ours | HD95 paper | ASD ours | ASD paper |",
             "|---|---|---|---|---|---|---|---|"]
    for c, groups in grouped(rows, classes, key).items():
        published = table.get((dataset, c), {})
        for k, rs in groups.items():
            label = LOSS_LABELS.get(k, k) if key == "loss" else k
            s = stats(rs)
            p = published.get(label)
            cells = []
            for j, m in enumerate(METRICS):
                cells += [_fmt(*s[m][:2]), _fmt(p[2 * j], p[2 * j + 1]) if p else "-"]
            lines.append(f"| {c} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


CLAIMS = (("hd95", statistics.Claim("hd95", "lower"), "GSL's HD95 is lower than {b}'s"),
          ("asd", statistics.Claim("asd", "lower"), "GSL's ASD is lower than {b}'s"),
          ("dice", statistics.Claim("dice", "higher", DICE_MARGIN),
           "GSL's Dice is comparable to {b}'s (at most " + f"{DICE_MARGIN:g}" + " below)"))


def _fmt_ci(mean: float, ci: tuple) -> str:
    def one(x):
        if math.isnan(x) or x == 0:
            return "nan" if math.isnan(x) else "0"
        return f"{x:.2e}" if abs(x) < 1e-3 else f"{x:.4f}" if abs(x) < 10 else f"{x:.5g}"
    return f"{one(mean)} [{one(ci[0])}, {one(ci[1])}]"


def _fmt_p(p: float, reason: str) -> str:
    return f"n/a ({reason})" if math.isnan(p) else f"{p:.3g}"


def ci_table(rows: list, classes, key: str = "loss") -> str:
    """Per loss: the number of cases and each metric's mean over cases with its 95% bootstrap CI."""
    lines = ["| Task | Loss | cases | Dice [↑] | Hausdorff 95 (mm) [↓] | Avg. Surface (mm) [↓] |",
             "|---|---|---|---|---|---|"]
    for c, groups in grouped(rows, classes, key).items():
        for i, (k, rs) in enumerate(groups.items()):
            cells = []
            for m in METRICS:
                v = list(statistics.per_case_means(rs, m).values())
                cells.append(_fmt_ci(float(np.mean(v)), statistics.bootstrap_mean_ci(v)))
            n = len(statistics.per_case_means(rs, METRICS[0]))
            lines.append(f"| {c if i == 0 else ''} | {LOSS_LABELS.get(k, k)} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paper_direction(published: dict, baseline: str, claim) -> str:
    """What the paper's Table 1 means say for this comparison (the paper gives no per-case data, so no CI)."""
    if "GSL" not in published or baseline not in published:
        return "-"
    j = 2 * METRICS.index(claim.metric)
    g, b = published["GSL"][j], published[baseline][j]
    sign = 1.0 if claim.better == "higher" else -1.0
    agrees = sign * (g - b) > -claim.margin
    return f"{g:.4g} vs {b:.4g} ({'agrees' if agrees else 'disagrees'})"


def verdicts(rows: list, dataset: str, classes) -> list:
    """One dict per (class, claim, baseline): ``class``, ``claim``, ``metric``, ``baseline``, ``n``, ``mean_diff``,
    ``ci`` (of GSL minus baseline), ``p``, ``p_reason``, ``wins``, ``verdict``, ``reason``, ``paper``.

    The baselines are every other loss of the run (Table 1 rows: boundary losses at their first schedule); the
    claims are the paper's (Results and Discussion): GSL's HD95 and ASD are lower than each other loss's and its
    Dice is comparable (at most ``DICE_MARGIN`` below).  ``fastgsl.train.statistics`` gives the pairing, the
    interval, the test and the rule."""
    out = []
    for c, groups in grouped(table1_rows(rows), classes, "loss").items():
        published = paper.TABLE1.get((dataset, c), {})
        if "gsl" not in groups:
            continue
        for metric, claim, text in CLAIMS:
            for b in (k for k in groups if k != "gsl"):
                label = LOSS_LABELS.get(b, b)
                d = statistics.paired_differences(groups["gsl"], groups[b], metric)
                v = list(d.values())
                ci = statistics.bootstrap_mean_ci(v)
                p, why = statistics.wilcoxon_p(v)
                sign = 1.0 if claim.better == "higher" else -1.0
                verdict, reason = statistics.verdict(claim, ci, len(v))
                out.append({"class": c, "claim": text.format(b=label), "metric": metric, "baseline": label,
                            "n": len(v), "mean_diff": float(np.mean(v)) if v else math.nan, "ci": ci, "p": p,
                            "p_reason": why, "wins": int(sum(sign * x > 0 for x in v)), "verdict": verdict,
                            "reason": reason, "paper": _paper_direction(published, label, claim)})
    return out


def verdict_table(vs: list) -> str:
    """The paired comparisons: GSL minus baseline per case, its 95% CI, the Wilcoxon p-value and the verdict."""
    lines = ["| Task | Claim | cases | GSL − baseline [95% CI] | GSL better on | Wilcoxon p | verdict | "
             "paper's means (GSL vs baseline) |",
             "|---|---|---|---|---|---|---|---|"]
    for v in vs:
        lines.append(f"| {v['class']} | {v['claim']} | {v['n']} | {_fmt_ci(v['mean_diff'], v['ci'])} | "
                     f"{v['wins']}/{v['n']} | {_fmt_p(v['p'], v['p_reason'])} | **{v['verdict']}** "
                     f"({v['reason']}) | {v['paper']} |")
    return "\n".join(lines)


def build_markdown(rows: list, spec, *, title: str, notes: list) -> tuple:
    """``(markdown, verdict list)`` for the whole experiment."""
    classes = spec.class_names
    t1 = table1_rows(rows)
    md = [f"# {title}", "", *notes, "", "## Table 1 layout: mean (std) per loss", "",
          markdown_table(t1, spec.dataset, classes), ""]
    gsl_schedules = {r["schedule"] for r in rows if r["loss"] == "gsl"}
    if len(gsl_schedules) > 1:
        t2 = [r for r in rows if r["loss"] == "gsl"]
        md += ["## Table 2 layout: GSL per alpha schedule", "",
               markdown_table(t2, spec.dataset, classes, key="schedule", key_title="Schedule"), ""]
    if spec.paper is not None:
        md += ["## Beside the paper's Table 1", "",
               f"Published numbers: {paper.CITATION}, Table 1 ({spec.paper}, nnU-Net, 5-fold CV). They are for the "
               "real dataset; ours are for the data named above, so only the direction of the differences is "
               "comparable.", "",
               comparison_block(t1, spec.paper, classes, paper.TABLE1, "loss", "Loss"), ""]
        if len(gsl_schedules) > 1:
            md += [f"## Beside the paper's Table 2 ({paper.CITATION}, Table 2)", "",
                   comparison_block([r for r in rows if r["loss"] == "gsl"], spec.paper, classes, paper.TABLE2,
                                    "schedule", "Schedule"), ""]
    else:
        md += ["The paper publishes no numbers for this task, so there is no comparison with its tables.", ""]
    md += [f"## Mean per loss with its 95% bootstrap CI over cases ({statistics.N_RESAMPLES} resamples)", "",
           ci_table(t1, classes), ""]
    vs = verdicts(rows, spec.paper, classes)
    md += ["## Verdicts on the paper's claims: paired per-case differences", "",
           f"GSL minus each baseline per held-out case, paired per (seed, fold, case) and averaged over seeds; "
           f"95% percentile-bootstrap CI ({statistics.N_RESAMPLES} resamples, fixed seed); two-sided Wilcoxon "
           f"signed-rank test. Supported: the CI excludes the claim's bound (0, or {DICE_MARGIN:g} below for "
           "Dice) in the claim's direction; contradicted: it excludes it the other way; inconclusive: otherwise "
           f"(or fewer than {statistics.MIN_CASES} cases).", "", verdict_table(vs) if vs else
           "No verdicts: the run did not train GSL and a baseline.", ""]
    return "\n".join(md), vs
