"""The paper's preprocessing (section 2.3), applied to raw MSD cases.

CT / LiTS (binary liver: every label > 0 is liver, as in the paper's binary task)
    Resample every case to the median in-plane spacing and the 90th percentile through-plane spacing of the
    training data (the paper, following nnU-Net [20]; the through-plane axis is the one with the largest
    median spacing).  Images are resampled trilinearly; labels one value at a time, linearly, thresholded at
    0.5 (nnU-Net's label resampling).  Then window at the 0.5 / 99.5 percentiles of the foreground
    intensities over the training data and z-score with the foreground mean and std (the paper: "-17 to 201
    HU" on LiTS).
MR / BraTS (regions)
    Crop to the brain (the bounding box of non-zero voxels in any channel), z-score each channel over its
    non-zero voxels, keep zero outside the brain (nnU-Net), and turn the labels into the nested regions
    WT / TC / ET.  The regions are found from the label names in ``dataset.json``: MSD Task01 uses
    1 = edema, 2 = non-enhancing tumour, 3 = enhancing tumour; BraTS 2020 uses 1 = NCR/NET, 2 = ED, 4 = ET.
    WT is every tumour label, TC every label but edema, ET the enhancing label.

The foreground statistics use every case listed in ``dataset.json`` (nnU-Net's dataset fingerprint), so they
do not depend on the fold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fastgsl.train.msd import DatasetInfo, RawCase

REGION_NAMES = ("Whole Tumor", "Tumor Core", "Enhancing Tumor")


@dataclass
class TaskSpec:
    """What the network predicts.

    ``kind="labels"``: mutually exclusive classes (softmax), ``num_classes`` including background; the
    evaluated classes are 1..num_classes-1.  ``kind="regions"``: overlapping regions (sigmoid), one channel each.
    """

    kind: str
    dataset: str                # "LiTS"-like or "BraTS"-like name used in tables
    class_names: tuple          # names of the evaluated channels
    in_channels: int

    @property
    def out_channels(self) -> int:
        return len(self.class_names) + (1 if self.kind == "labels" else 0)

    @property
    def activation(self) -> str:
        return "softmax" if self.kind == "labels" else "sigmoid"


@dataclass
class Case:
    """A preprocessed case: ``image (C, *sp)`` float32; ``target`` labels ``(*sp)`` uint8 or regions ``(R, *sp)``
    uint8; spacing in mm per axis."""

    name: str
    image: np.ndarray
    target: np.ndarray
    spacing: tuple


def _norm(name: str) -> str:
    return name.lower().replace("-", " ").replace("_", " ")


def region_label_values(labels: dict) -> list:
    """``[WT values, TC values, ET values]`` from a ``{value: name}`` label table (see the module docstring)."""
    tumour = {v: _norm(n) for v, n in labels.items() if v != 0}
    edema = [v for v, n in tumour.items() if "edema" in n or "oedema" in n or n.strip() in ("ed",)]
    enhancing = [v for v, n in tumour.items()
                 if ("enhancing" in n and "non" not in n) or n.strip() in ("et",)]
    if len(edema) != 1 or len(enhancing) != 1:
        raise ValueError("cannot find the edema and enhancing-tumour labels in dataset.json's labels "
                         f"{labels}; expected names like 'edema' and 'enhancing tumour'")
    wt = sorted(tumour)
    tc = sorted(v for v in tumour if v != edema[0])
    return [wt, tc, enhancing]


def task_spec(info: DatasetInfo, task: str | None = None) -> TaskSpec:
    """The task of a dataset: ``"liver"`` (binary, CT preprocessing) or ``"tumour"`` (regions, MR)."""
    if task is None:
        task = "liver" if info.is_ct else "tumour"
    if task == "liver":
        return TaskSpec("labels", "LiTS", ("Liver",), len(info.modalities))
    if task == "tumour":
        region_label_values(info.labels)  # fail early on an unknown label table
        return TaskSpec("regions", "BraTS", REGION_NAMES, len(info.modalities))
    raise ValueError(f"task must be 'liver' or 'tumour', got {task!r}")


# -- CT ---------------------------------------------------------------------------------------------------------
@dataclass
class CTPlan:
    target_spacing: tuple
    window: tuple       # (low, high) intensity
    mean: float
    std: float


def plan_ct(cases: list, max_fg_samples: int = 10000, seed: int = 0) -> CTPlan:
    """Target spacing and foreground intensity statistics over the given raw cases (paper section 2.3)."""
    spacings = np.array([c.spacing for c in cases], dtype=np.float64)
    med = np.median(spacings, axis=0)
    through = int(np.argmax(med))
    target = med.copy()
    target[through] = np.percentile(spacings[:, through], 90)
    rng = np.random.default_rng(seed)
    samples = []
    for c in cases:
        fg = c.image[0][c.label > 0]
        if fg.size > max_fg_samples:  # nnU-Net samples the foreground of each case the same way
            fg = rng.choice(fg, max_fg_samples, replace=False)
        samples.append(fg)
    fg = np.concatenate(samples) if samples else np.zeros(0)
    if fg.size == 0:
        raise ValueError("no foreground voxels in the training labels: cannot compute the CT window")
    lo, hi = np.percentile(fg, [0.5, 99.5])
    clipped = np.clip(fg, lo, hi)
    return CTPlan(tuple(float(s) for s in target), (float(lo), float(hi)), float(clipped.mean()),
                  float(max(clipped.std(), 1e-8)))


def resampled_shape(shape, spacing, target_spacing) -> tuple:
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing))


def _resize(x: torch.Tensor, shape, mode: str) -> torch.Tensor:
    return F.interpolate(x[None], size=shape, mode=mode, align_corners=False)[0]


def resample_case(case: RawCase, target_spacing) -> RawCase:
    shape = resampled_shape(case.label.shape, case.spacing, target_spacing)
    if shape == case.label.shape:
        return RawCase(case.name, case.image, case.label, tuple(target_spacing))
    image = _resize(torch.from_numpy(case.image.astype(np.float32)), shape, "trilinear").numpy()
    label = np.zeros(shape, case.label.dtype)
    for v in np.unique(case.label):
        if v == 0:
            continue
        m = _resize(torch.from_numpy((case.label == v).astype(np.float32))[None], shape, "trilinear")[0].numpy()
        label[m > 0.5] = v
    return RawCase(case.name, image, label, tuple(float(t) for t in target_spacing))


def preprocess_ct(case: RawCase, plan: CTPlan) -> Case:
    r = resample_case(case, plan.target_spacing)
    image = (np.clip(r.image, *plan.window) - plan.mean) / plan.std
    return Case(r.name, image.astype(np.float32), (r.label > 0).astype(np.uint8), r.spacing)


# -- MR ---------------------------------------------------------------------------------------------------------
def brain_bbox(image: np.ndarray) -> tuple:
    """Slices of the bounding box of the voxels non-zero in any channel."""
    nz = np.any(image != 0, axis=0)
    if not nz.any():
        raise ValueError("the image is zero everywhere: no brain to crop to")
    out = []
    for ax in range(nz.ndim):
        other = tuple(a for a in range(nz.ndim) if a != ax)
        idx = np.flatnonzero(nz.any(axis=other))
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


def preprocess_mr(case: RawCase, labels: dict) -> Case:
    box = brain_bbox(case.image)
    image = case.image[(slice(None),) + box].astype(np.float32)
    label = case.label[box]
    out = np.zeros_like(image)
    for c in range(image.shape[0]):
        nz = image[c] != 0
        if nz.any():
            v = image[c][nz]
            out[c][nz] = (v - v.mean()) / max(float(v.std()), 1e-8)
    regions = np.stack([np.isin(label, vals) for vals in region_label_values(labels)]).astype(np.uint8)
    return Case(case.name, out, regions, case.spacing)
