"""Preprocessing of raw cases (``fastgsl.train.layouts``) into training cases: the task, then nnU-Net's
cropping, resampling and normalisation, which cover the paper's section 2.3.

The task (what the network predicts, :func:`task_spec`) comes from the dataset itself:
    - **regions** (sigmoid, one channel per region): an nnU-Net v2 dataset whose labels are regions (lists of
      values, with ``regions_class_order``), or a dataset whose label names are BraTS's (edema, non-enhancing
      and enhancing tumour: MSD Task01 uses 1 / 2 / 3, BraTS 2020 1 = NCR/NET, 2 = ED, 4 = ET), which gives the
      nested WT / TC / ET regions of the paper: WT every tumour label, TC every label but edema, ET enhancing;
    - **multi-class** (softmax) otherwise: every foreground label is a class of its own;
    - **binary** (softmax over background and one class made of every label above 0, the paper's LiTS task) only
      when asked for (``binary=True``, or ``task="liver"``).
    A label table that names some BraTS parts but not all is ambiguous and stops with an error.

Per case, in this order:
    1. Crop to the bounding box of the voxels non-zero in any channel or labelled (nnU-Net crops every dataset
       to non-zero; CT, whose air is -1000, keeps its whole box).
    2. Resample to the dataset's target spacing: the median spacing per axis, the through-plane axis (largest
       median) at its 90th percentile (the paper's section 2.3; nnU-Net v2 itself keeps the median, or takes the
       10th percentile of an axis much coarser than the others); images trilinearly, labels one value at a
       time, linearly, thresholded at 0.5 (nnU-Net's label resampling).  nnU-Net normalises before resampling;
       here normalisation comes after, so a CT window is applied to the resampled intensities.
    3. Normalise each channel by its name in ``dataset.json``, as nnU-Net v2 does (``channel_names`` /
       ``modality``, compared case-insensitively; nnunetv2 2.x, ``preprocessing/normalization``):
       - **CT**: clip at the 0.5 / 99.5 percentiles of the foreground (label > 0) intensities over the whole
         dataset, then subtract their mean and divide by their std (the paper: "-17 to 201 HU" on LiTS).  The
         mean and std are those of the clipped foreground; nnU-Net's fingerprint takes them unclipped.
       - **noNorm**: unchanged; **rescale_to_0_1**: per case to [0, 1]; **rgb_to_0_1**: divided by 255.
       - **any other name** (zscore, T1, MRI, ...): z-score per case; over the non-zero region (any channel
         non-zero, holes filled; zero outside) when the dataset is cropped to non-zero, as BraTS is: nnU-Net's
         rule, cropping shrinks the median case by at least a quarter.
    4. Map the labels to the task's target: class indices ``0..C-1`` (softmax) or one mask per region.

The dataset statistics use every case listed in ``dataset.json`` (nnU-Net's dataset fingerprint), so they do not
depend on the fold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from fastgsl.train.layouts import DatasetError, DatasetInfo, RawCase

SCHEMES = ("ct", "nonorm", "zscore", "rescale_to_0_1", "rgb_to_0_1")   # nnU-Net v2's names; others are zscore

REGION_NAMES = ("Whole Tumor", "Tumor Core", "Enhancing Tumor")
TASKS = ("liver", "tumour", "multiclass", "regions")
NONZERO_CROP_FRACTION = 0.75   # nnU-Net: normalise over the non-zero mask when cropping keeps < 3/4 of a case


@dataclass
class TaskSpec:
    """What the network predicts.

    ``kind="labels"``: mutually exclusive classes (softmax), background plus one class per ``class_names``
    entry; the evaluated classes are 1..C-1.  ``kind="regions"``: overlapping regions (sigmoid), one channel
    each.  ``sources[k]`` are the label values that make evaluated class / region ``k``.  ``dataset`` is the
    name shown in the tables; ``paper`` the paper's dataset (``"LiTS"``, ``"BraTS"``) whose published rows are
    comparable, or None.
    """

    kind: str
    dataset: str
    class_names: tuple
    in_channels: int
    sources: tuple = ()
    paper: str | None = None

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
    return name.lower().replace("-", " ").replace("_", " ").strip()


def _brats_parts(labels: dict) -> tuple:
    tumour = {v: _norm(n) for v, n in labels.items() if v != 0}
    edema = [v for v, n in tumour.items() if "edema" in n or "oedema" in n or n == "ed"]
    enhancing = [v for v, n in tumour.items() if ("enhancing" in n and "non" not in n) or n == "et"]
    return tumour, edema, enhancing


def region_label_values(labels: dict) -> list:
    """``[WT values, TC values, ET values]`` from a ``{value: name}`` label table (see the module docstring)."""
    tumour, edema, enhancing = _brats_parts(labels)
    if len(edema) != 1 or len(enhancing) != 1:
        raise DatasetError("cannot find the edema and enhancing-tumour labels in dataset.json's labels "
                           f"{labels}; expected names like 'edema' and 'enhancing tumour'")
    return [sorted(tumour), sorted(v for v in tumour if v != edema[0]), enhancing]


def _is_brats_regions(names) -> bool:
    aliases = ({"whole tumor", "whole tumour", "wt"}, {"tumor core", "tumour core", "tc"},
               {"enhancing tumor", "enhancing tumour", "et"})
    return len(names) == 3 and all(_norm(n) in a for n, a in zip(names, aliases))


def task_spec(info: DatasetInfo, task: str | None = None, binary: bool = False) -> TaskSpec:
    """The task of a dataset (module docstring); ``task`` / ``binary`` are ``--task`` / ``--binary``.

    ``task``: None (from the dataset), ``"liver"`` (the paper's binary LiTS task), ``"tumour"`` (BraTS WT / TC /
    ET regions from the label names), ``"multiclass"`` or ``"regions"``.
    """
    if task is not None and task not in TASKS:
        raise DatasetError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if binary and task not in (None, "liver"):
        raise DatasetError(f"--binary contradicts --task {task}")
    where = info.root / "dataset.json"
    if info.ignore_label is not None:
        raise DatasetError(f"{where} declares an ignore label ({info.ignore_label}): the losses have no mask for "
                           "unannotated voxels, so partially annotated datasets are not supported")
    c = len(info.modalities)
    fg = sorted(v for v in info.labels if v != 0)
    if not fg:
        raise DatasetError(f"{where}: labels {info.labels} have no foreground label")
    if binary or task == "liver":
        liver = task == "liver"
        name = "Liver" if liver else (info.labels[fg[0]] if len(fg) == 1 else "Foreground")
        return TaskSpec("labels", _display(info, "LiTS" if liver else None), (name,), c, (tuple(fg),),
                        "LiTS" if liver else None)
    if info.regions is not None:
        names = tuple(n for n, _ in info.regions)
        brats = _is_brats_regions(names)
        if task == "multiclass" or (task == "tumour" and not brats):
            raise DatasetError(f"{where} defines regions {list(names)} (nnU-Net regions); --task {task} cannot use "
                               "them: leave --task out, or use --task regions / --binary")
        return TaskSpec("regions", _display(info, "BraTS" if brats else None), REGION_NAMES if brats else names, c,
                        tuple(v for _, v in info.regions), "BraTS" if brats else None)
    _, edema, enhancing = _brats_parts(info.labels)
    if task in ("tumour", "regions") or (task is None and (edema or enhancing)):
        if task is None and (len(edema) != 1 or len(enhancing) != 1):
            raise DatasetError(f"{where}: labels {info.labels} name some BraTS tumour parts but not one edema and one "
                               "enhancing-tumour label, so it is unclear whether to train the WT / TC / ET regions or "
                               "the labels as classes: pass --task tumour (after fixing the names) or --task "
                               "multiclass")
        return TaskSpec("regions", _display(info, "BraTS"), REGION_NAMES, c,
                        tuple(tuple(v) for v in region_label_values(info.labels)), "BraTS")
    return TaskSpec("labels", _display(info, None), tuple(info.labels[v] for v in fg), c, tuple((v,) for v in fg))


def _display(info: DatasetInfo, paper: str | None) -> str:
    return f"{paper}-like" if info.generated and paper else info.name


def make_target(label: np.ndarray, spec: TaskSpec) -> np.ndarray:
    """The training target of a label map: class indices (softmax) or stacked region masks (sigmoid), uint8."""
    if spec.kind == "regions":
        return np.stack([np.isin(label, vals) for vals in spec.sources]).astype(np.uint8)
    if len(spec.sources) == 1:
        return np.isin(label, spec.sources[0]).astype(np.uint8)
    out = np.zeros(label.shape, np.uint8)
    for k, vals in enumerate(spec.sources):
        out[np.isin(label, vals)] = k + 1
    return out


# -- the dataset plan -------------------------------------------------------------------------------------------
@dataclass
class CTStats:
    window: tuple       # (low, high) intensity
    mean: float
    std: float


@dataclass
class Plan:
    """Dataset-wide preprocessing parameters: target spacing, per-channel normalisation, non-zero masking."""

    target_spacing: tuple
    schemes: tuple      # per channel, one of SCHEMES
    ct: dict            # channel index -> CTStats, for the CT channels
    nonzero_mask: bool  # z-score channels over the non-zero region


def target_spacing(cases: list) -> tuple:
    """Median spacing per axis, the through-plane axis (largest median) at its 90th percentile."""
    spacings = np.array([c.spacing for c in cases], dtype=np.float64)
    med = np.median(spacings, axis=0)
    through = int(np.argmax(med))
    target = med.copy()
    target[through] = np.percentile(spacings[:, through], 90)
    return tuple(float(s) for s in target)


def ct_stats(cases: list, channel: int = 0, max_fg_samples: int = 10000, seed: int = 0) -> CTStats:
    """Foreground intensity window and statistics of one CT channel over the given raw cases."""
    rng = np.random.default_rng(seed)
    samples = []
    for c in cases:
        fg = c.image[channel][c.label > 0]
        if fg.size > max_fg_samples:  # nnU-Net samples the foreground of each case the same way
            fg = rng.choice(fg, max_fg_samples, replace=False)
        samples.append(fg)
    fg = np.concatenate(samples) if samples else np.zeros(0)
    if fg.size == 0:
        raise DatasetError("no foreground voxels in the training labels: cannot compute the CT window")
    lo, hi = np.percentile(fg, [0.5, 99.5])
    clipped = np.clip(fg, lo, hi)
    return CTStats((float(lo), float(hi)), float(clipped.mean()), float(max(clipped.std(), 1e-8)))


def nonzero_box(case: RawCase) -> tuple:
    """Slices of the bounding box of the voxels non-zero in any channel or labelled."""
    nz = np.any(case.image != 0, axis=0) | (case.label != 0)
    if not nz.any():
        raise DatasetError(f"case {case.name}: the image is zero everywhere")
    out = []
    for ax in range(nz.ndim):
        other = tuple(a for a in range(nz.ndim) if a != ax)
        idx = np.flatnonzero(nz.any(axis=other))
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


def scheme(channel_name: str) -> str:
    """The normalisation of a channel from its name (module docstring, step 3)."""
    name = str(channel_name).strip().casefold()
    return name if name in SCHEMES else "zscore"


def plan_dataset(cases: list, modalities) -> Plan:
    """The :class:`Plan` of a dataset from all its raw cases."""
    schemes = tuple(scheme(m) for m in modalities)
    ct = {k: ct_stats(cases, k) for k, s in enumerate(schemes) if s == "ct"}
    kept = [np.prod([s.stop - s.start for s in nonzero_box(c)]) / c.label.size for c in cases]
    return Plan(target_spacing(cases), schemes, ct, bool(np.median(kept) < NONZERO_CROP_FRACTION))


# -- per case ---------------------------------------------------------------------------------------------------
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


def normalise(image: np.ndarray, plan: Plan, name: str = "") -> np.ndarray:
    """Each channel by its scheme (module docstring, step 3); ``name`` (the case) is for the error message."""
    out = np.zeros(image.shape, np.float32)
    mask = None
    if plan.nonzero_mask and "zscore" in plan.schemes:
        mask = ndimage.binary_fill_holes(np.any(image != 0, axis=0))
    for c, how in enumerate(plan.schemes):
        x = image[c]
        if how == "ct":
            s = plan.ct[c]
            out[c] = (np.clip(x, *s.window) - s.mean) / s.std
            continue
        if how == "nonorm":
            out[c] = x
            continue
        if how == "rescale_to_0_1":
            out[c] = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
            continue
        if how == "rgb_to_0_1":
            if x.min() < 0 or x.max() > 255:
                raise DatasetError(f"case {name}: channel {c} is rgb_to_0_1 but holds values outside [0, 255] "
                                   f"({x.min()} to {x.max()})")
            out[c] = x / 255.0
            continue
        region = mask if mask is not None else np.ones(image.shape[1:], bool)
        if region.any():
            v = image[c][region]
            out[c][region] = (v - v.mean()) / max(float(v.std()), 1e-8)
    return out


def preprocess_case(case: RawCase, plan: Plan, spec: TaskSpec) -> Case:
    box = nonzero_box(case)
    cropped = RawCase(case.name, case.image[(slice(None),) + box], case.label[box], case.spacing)
    r = resample_case(cropped, plan.target_spacing)
    return Case(r.name, normalise(r.image, plan, case.name), make_target(r.label, spec), r.spacing)
