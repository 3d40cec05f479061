"""PNG figures with matplotlib's Agg backend: predictions like the paper's Figures 3 and 4, and training curves.

Figures 3 / 4 show, left to right, the ground truth and each loss's prediction on an easy, a medium and a hard
test case.  Here difficulty is the mean Dice over all losses shown (best, median and worst case), and the
slice is the one with the most ground truth (``fastgsl.train.evaluate.preview_slice``).  Regions are drawn
nested, WT green, TC yellow, ET red (the BraTS colours); a binary mask in red; more classes in the ``tab10``
colours, any number of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fastgsl.train.objectives import LOSS_LABELS

COLOURS = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (1.0, 0.85, 0.1), (0.9, 0.1, 0.1)]


def mask_colours(n: int) -> list:
    """One RGB colour per mask: red for a single one, the BraTS green / yellow / red for up to three (drawn in
    order, so nested regions stay visible), matplotlib's ``tab10`` cycle beyond."""
    if n == 1:
        return [COLOURS[0]]
    if n <= 3:
        return COLOURS[1:1 + n]
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    return [tuple(cmap(k % 10)[:3]) for k in range(n)]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _overlay(ax, image: np.ndarray, masks: np.ndarray, title: str | None = None) -> None:
    lo, hi = np.percentile(image, [1, 99])
    ax.imshow(np.rot90(image), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    rgba = np.zeros(masks.shape[1:] + (4,))
    for m, col in zip(masks, mask_colours(masks.shape[0])):
        rgba[m.astype(bool)] = (*col, 0.45)
    ax.imshow(np.rot90(rgba))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def prediction_figure(path: Path, previews: dict, rows: list, spec) -> list:
    """Write the figure; ``previews``: ``{loss: {case: (image, truth, pred)}}``.  Returns the cases shown."""
    losses = [k for k in previews if previews[k]]
    if not losses:
        return []
    common = set.intersection(*(set(previews[k]) for k in losses))
    dice = {}
    for r in rows:
        if r["case"] in common and r["loss"] in losses:
            dice.setdefault(r["case"], []).append(r["dice"])
    ranked = sorted(common, key=lambda c: (-np.mean(dice.get(c, [0.0])), c))
    if not ranked:
        return []
    picks = [ranked[0], ranked[len(ranked) // 2], ranked[-1]]
    names = ["easy", "medium", "hard"]
    if len(ranked) < 3:
        picks, names = ranked, names[:len(ranked)]
    plt = _pyplot()
    fig, axes = plt.subplots(len(picks), 1 + len(losses), figsize=(2.6 * (1 + len(losses)), 2.6 * len(picks)),
                             squeeze=False)
    for i, (case, level) in enumerate(zip(picks, names)):
        image, truth, _ = previews[losses[0]][case]
        _overlay(axes[i, 0], image, truth, "Ground truth" if i == 0 else None)
        axes[i, 0].set_ylabel(f"{level}\n{case}", fontsize=8)
        for j, k in enumerate(losses):
            d = np.mean([r["dice"] for r in rows if r["case"] == case and r["loss"] == k])
            _overlay(axes[i, j + 1], image, previews[k][case][2], None)
            axes[i, j + 1].set_title((LOSS_LABELS.get(k, k) + "\n" if i == 0 else "") + f"Dice {d:.3f}", fontsize=9)
    fig.suptitle(f"Ground truth and predictions ({spec.dataset}, " + ", ".join(spec.class_names) + ")",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return picks


def training_curves(path: Path, histories: dict) -> None:
    """``histories``: ``{run label: [epoch entries]}`` -> loss, alpha, validation Dice and HD95 per epoch."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for label, hist in histories.items():
        ep = [h["epoch"] + 1 for h in hist]
        axes[0].plot(ep, [h["loss"] for h in hist], label=label)
        axes[1].plot(ep, [h["alpha"] for h in hist], label=label)
        val = [(h["epoch"] + 1, h["val"]) for h in hist if h.get("val")]
        if val:
            axes[2].plot([e for e, _ in val], [v["dice"] for _, v in val], "o-", label=label)
            axes[3].plot([e for e, _ in val], [v["hd95"] for _, v in val], "o-", label=label)
    for ax, t in zip(axes, ("training loss", "alpha (region weight)", "held-out Dice", "held-out HD95 (mm)")):
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
