"""The results: per-case CSV, Table 1 / Table 2 in the paper's layout, the paper's rows beside ours, and a
verdict on each of the paper's claims computed from the measured numbers.

Means and standard deviations are over every evaluated case of every fold run (numpy's population std), as
the paper reports them over its cross-validation predictions.  The claims checked (paper, Results and
Discussion, Table 1): for each task, GSL's mean HD95 is lower than Dice-CE's and BL's; so is its mean ASD; and
its mean Dice is within 0.01 of theirs (not more than 0.01 below the better of the two).  Each verdict is
"supported" or "not supported" on the means, with a paired Wilcoxon signed-rank test per comparison (scipy)
to say whether the difference is more than noise at this number of cases; "not tested" when a loss it needs
was not run.  The same rule is applied to the paper's own Table 1 rows.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from fastgsl.train import paper
from fastgsl.train.objectives import LOSS_LABELS

METRICS = ("dice", "hd95", "asd")
HEADER = "| Dataset | Task | {key} | Dice [↑] | Hausdorff 95 (mm) [↓] | Avg. Surface (mm) [↓] |"
CSV_FIELDS = ("loss", "schedule", "fold", "case", "class", "dice", "hd95", "asd")


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


def _paired_p(a: list, b: list) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired samples (nan when undefined)."""
    from scipy.stats import wilcoxon
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size < 2 or not np.any(d != 0) or not np.all(np.isfinite(d)):
        return math.nan
    return float(wilcoxon(a, b).pvalue)


def _claim(gsl: float, others: dict, metric: str) -> bool:
    if metric == "dice":
        return gsl >= max(others.values()) - 0.01
    return all(gsl < v for v in others.values())


CLAIMS = (("hd95", "GSL's HD95 is lower than Dice-CE's and BL's"),
          ("asd", "GSL's ASD is lower than Dice-CE's and BL's"),
          ("dice", "GSL's Dice is within 0.01 of Dice-CE's and BL's (at most 0.01 below the better)"))


def verdicts(rows: list, dataset: str, classes) -> list:
    """One dict per (class, claim): ``claim``, ``verdict``, ``detail``, ``paper_verdict``."""
    out = []
    for c, groups in grouped(table1_rows(rows), classes, "loss").items():
        published = paper.TABLE1.get((dataset, c), {})
        for metric, text in CLAIMS:
            pv = None
            if all(k in published for k in ("GSL", "Dice-CE", "BL")):
                j = 2 * METRICS.index(metric)
                pv = _claim(published["GSL"][j], {k: published[k][j] for k in ("Dice-CE", "BL")}, metric)
            entry = {"class": c, "claim": text, "paper_verdict": None if pv is None else
                     ("supported" if pv else "not supported")}
            missing = [k for k in ("gsl", "dice_ce", "bl") if k not in groups]
            if missing:
                entry.update(verdict="not tested", detail=f"needs --losses {' '.join(missing)}")
                out.append(entry)
                continue
            key = lambda r: (r["fold"], r["case"])  # noqa: E731 - pair cases across losses
            vals = {k: [r[metric] for r in sorted(groups[k], key=key)] for k in ("gsl", "dice_ce", "bl")}
            means = {k: float(np.mean(v)) for k, v in vals.items()}
            ok = _claim(means["gsl"], {"dice_ce": means["dice_ce"], "bl": means["bl"]}, metric)
            parts = []
            for k in ("dice_ce", "bl"):
                p = _paired_p(vals["gsl"], vals[k])
                wins = sum((g > o) if metric == "dice" else (g < o) for g, o in zip(vals["gsl"], vals[k]))
                parts.append(f"GSL {means['gsl']:.4g} vs {LOSS_LABELS[k]} {means[k]:.4g} "
                             f"(GSL better on {wins}/{len(vals['gsl'])} cases, Wilcoxon p={p:.3g})")
            entry.update(verdict="supported" if ok else "not supported", detail="; ".join(parts))
            out.append(entry)
    return out


def verdict_block(vs: list) -> str:
    lines = []
    for v in vs:
        paper_part = f" [paper's own Table 1: {v['paper_verdict']}]" if v["paper_verdict"] else ""
        lines.append(f"- **{v['class']}: {v['claim']}: {v['verdict'].upper()}**{paper_part}  \n  {v['detail']}")
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
    vs = verdicts(rows, spec.paper, classes)
    md += ["## Verdicts on the paper's claims (from the measured means)", "", verdict_block(vs), ""]
    return "\n".join(md), vs
