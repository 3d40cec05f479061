"""The built-in data: two deterministic generated datasets that imitate the paper's tasks, written in the
Medical Segmentation Decathlon layout on first use (no download).

``liver`` (CT-like, imitates LiTS, binary; the ranges are :class:`LiverDesign`)
    One large smooth organ (a deformed ellipsoid, 100 HU) with a soft neighbour touching it (86-98 HU: where it
    is close, a network merges it), one to three small labelled satellites of organ tissue far from the organ
    (radius 4-7 mm), and one to three unlabelled distractors far from it: kidney-like, 25-50 HU brighter, or,
    one time in three, spleen-like, only 1-8 HU brighter.  Gaussian noise (sigma 28 HU) and partial-volume
    blur.  Anisotropic voxels whose spacing varies per case (in-plane 1.4-1.9 mm, through-plane 2.5-5 mm), so
    the LiTS resampling has work to do.  A network that fires on a distractor, merges the neighbour or misses
    a satellite keeps a good Dice but can get a large HD95 - the failure the paper targets.
``tumour`` (MR-like, imitates BraTS, 4 channels)
    A skull-stripped brain ellipsoid (zero outside), with a tumour: edema (label 1), a non-enhancing core
    (label 2) and an enhancing rim (label 3) - the MSD Task01 label values, giving nested regions
    WT = {1,2,3} > TC = {2,3} > ET = {3}.  The four channels (T1, T1c, T2, FLAIR) see the parts with different
    contrasts; each has Rician noise and a smooth multiplicative bias field.  About one case in eight has no
    enhancing rim (an empty ET, as in BraTS).

Shapes are built in millimetres, so each case's grid and spacing only change how it is sampled.  Every case
is a pure function of ``(task, seed, index)`` (and, for the liver, of ``LIVER_DESIGN``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

GENERATOR_VERSION = 3
TASKS = ("liver", "tumour")


def _smooth_field(rng: np.random.Generator, shape, sigma_vox) -> np.ndarray:
    """Zero-mean, unit-std smooth random field on ``shape`` (gaussian-filtered white noise)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-8)


def _grid(shape, spacing):
    """Voxel-centre coordinates in mm, one array per axis."""
    return np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)], indexing="ij")


def _blob(coords, centre, radii, wobble=None, amount=0.0):
    """Deformed ellipsoid: ``|(x - c) / r| < 1 + amount * wobble`` (``wobble`` a smooth field)."""
    r = np.sqrt(sum(((x - c) / rr) ** 2 for x, c, rr in zip(coords, centre, radii)))
    if wobble is not None:
        r = r - amount * wobble
    return r < 1.0


@dataclass(frozen=True)
class LiverDesign:
    """The ranges the liver cases are drawn from (uniform, per case), in mm and HU.

    The calibration of the built-in task (``fastgsl/train/README.md``, "Calibration of the built-in task") chose
    them on Dice-CE runs alone.  Under the paper's HD95 (the 95th percentile over every foreground voxel), a
    component moves the HD95 only when its volume passes about 5% of the organ's, so the traps are sized for
    that: a merged neighbour or a spurious distractor can, a small satellite cannot by itself.
    """

    organ_radii: tuple = ((22.0, 28.0), (20.0, 26.0), (22.0, 30.0))
    organ_hu: float = 100.0
    neighbour_hu: tuple = (86.0, 98.0)        # the soft neighbour touching the organ: merged when close
    neighbour_radii: tuple = ((14.0, 14.0), (10.0, 10.0), (16.0, 16.0))
    satellites: tuple = (1, 3)                 # labelled, of organ tissue, far from the organ
    satellite_radius: tuple = (4.0, 7.0)
    distractors: tuple = (1, 3)                # unlabelled, far from the organ
    distractor_radii: tuple = ((9.0, 14.0), (9.0, 14.0), (11.0, 18.0))
    distractor_hu: tuple = (125.0, 150.0)      # kidney-like: brighter than the organ
    hard_distractor_fraction: float = 0.35     # the chance that a distractor is a hard one instead: spleen-like,
    hard_distractor_hu: tuple = (101.0, 108.0)  # a few HU above the organ
    noise_hu: float = 28.0


LIVER_DESIGN = LiverDesign()


def _uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = bounds
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


def _liver_case(rng: np.random.Generator, design: LiverDesign | None = None):
    d = design or LIVER_DESIGN
    spacing = (float(rng.uniform(1.4, 1.9)),) * 2 + (float(rng.uniform(2.5, 5.0)),)
    extent = np.array([104.0, 104.0, 96.0])  # mm
    shape = tuple(int(round(e / s)) for e, s in zip(extent, spacing))
    xyz = _grid(shape, spacing)
    sig = [12.0 / s for s in spacing]  # ~12 mm correlation length for shape wobble
    # body: an elliptic cylinder; outside is air
    body = ((xyz[0] - 52) / 50) ** 2 + ((xyz[1] - 52) / 44) ** 2 < 1.0
    img = np.where(body, 40.0, -1000.0)
    img += np.where(body, 8.0 * _smooth_field(rng, shape, [3.0 / s for s in spacing]), 0.0)  # soft-tissue texture
    fat = body & (_smooth_field(rng, shape, sig) > 1.0)
    img[fat] = -90.0
    # the organ: large and smooth, on one side of the body
    centre = np.array([rng.uniform(38, 46), rng.uniform(46, 58), rng.uniform(42, 54)])
    radii = np.array([_uniform(rng, b) for b in d.organ_radii])
    organ = _blob(xyz, centre, radii, _smooth_field(rng, shape, sig), rng.uniform(0.08, 0.16)) & body
    # a soft neighbour of close intensity (stomach/heart-like) touching the organ: the hard boundary
    side = rng.choice([-1.0, 1.0])
    ncentre = centre + np.array([0.0, side * (radii[1] + 6.0), rng.uniform(-8, 8)])
    nradii = [_uniform(rng, b) for b in d.neighbour_radii]
    neighbour = _blob(xyz, ncentre, nradii) & body & ~organ
    img[neighbour] = _uniform(rng, d.neighbour_hu)
    label = organ.copy()
    dist_from_organ = ndimage.distance_transform_edt(~organ, sampling=spacing)
    # small labelled satellites of liver tissue, far from the organ
    n_sat = int(rng.integers(d.satellites[0], d.satellites[1] + 1))
    placed = 0
    for _ in range(60):
        if placed == n_sat:
            break
        c = np.array([rng.uniform(12, 92), rng.uniform(12, 92), rng.uniform(10, 86)])
        idx = tuple(min(int(ci / s), n - 1) for ci, s, n in zip(c, spacing, shape))
        if not body[idx] or dist_from_organ[idx] < 25.0 or neighbour[idx]:
            continue
        rad = _uniform(rng, d.satellite_radius)
        sat = _blob(xyz, c, (rad, rad, rad * rng.uniform(0.8, 1.3))) & body
        label |= sat
        placed += 1
    img[label] = d.organ_hu
    # unlabelled distractors (kidney- or spleen-like), far from the organ: false-positive traps
    for _ in range(int(rng.integers(d.distractors[0], d.distractors[1] + 1))):
        for _ in range(60):
            c = np.array([rng.uniform(15, 90), rng.uniform(15, 90), rng.uniform(15, 80)])
            idx = tuple(min(int(ci / s), n - 1) for ci, s, n in zip(c, spacing, shape))
            if body[idx] and dist_from_organ[idx] > 20.0 and not label[idx]:
                r = [_uniform(rng, b) for b in d.distractor_radii]
                trap = _blob(xyz, c, r) & body & ~label
                hard = d.hard_distractor_fraction > 0 and rng.uniform() < d.hard_distractor_fraction
                img[trap] = _uniform(rng, d.hard_distractor_hu if hard else d.distractor_hu)
                break
    # partial volume (blur ~1.5 mm) and scanner noise
    img = ndimage.gaussian_filter(img, [1.0 / s for s in spacing])
    img += rng.normal(0.0, d.noise_hu, shape)
    return img.astype(np.float32)[None], label.astype(np.uint8), spacing


def _tumour_case(rng: np.random.Generator):
    spacing = (2.0, 2.0, 2.0)
    shape = (48, 56, 44)
    xyz = _grid(shape, spacing)
    sig = [10.0 / s for s in spacing]
    bc = np.array([48.0, 56.0, 44.0])
    brain = _blob(xyz, bc, (42.0, 50.0, 38.0), _smooth_field(rng, shape, sig), 0.04)
    # tumour: edema (WT) with a core (TC) inside and an enhancing rim (ET) around a necrotic centre
    tc_centre = bc + rng.uniform(-1, 1, 3) * np.array([18.0, 22.0, 14.0])
    wt_r = rng.uniform(15, 22, 3)
    wt = _blob(xyz, tc_centre, wt_r, _smooth_field(rng, shape, sig), rng.uniform(0.15, 0.3)) & brain
    tc = _blob(xyz, tc_centre + rng.uniform(-2, 2, 3), wt_r * rng.uniform(0.45, 0.7),
               _smooth_field(rng, shape, sig), 0.15) & wt
    if rng.uniform() < 0.125:
        et = np.zeros_like(tc)
    else:
        et = tc & ~ndimage.binary_erosion(tc, iterations=int(rng.integers(1, 3)))
    label = np.zeros(shape, np.uint8)
    label[wt] = 1
    label[tc] = 2
    label[et] = 3
    tissue = 0.06 * _smooth_field(rng, shape, [3.0 / s for s in spacing])
    ventricles = _blob(xyz, bc + np.array([0, 4.0, 2.0]), (6.0, 14.0, 8.0)) & brain & ~wt
    #            T1    T1c   T2    FLAIR
    contrast = {"brain": (0.60, 0.55, 0.45, 0.50), "csf": (0.25, 0.25, 1.10, 0.15),
                "edema": (0.50, 0.50, 0.95, 1.05), "core": (0.35, 0.40, 0.85, 0.75), "et": (0.45, 1.15, 0.80, 0.85)}
    channels = []
    for ch in range(4):
        im = np.where(brain, contrast["brain"][ch] + tissue, 0.0)
        im[ventricles] = contrast["csf"][ch]
        im[label == 1] = contrast["edema"][ch] + tissue[label == 1]
        im[label == 2] = contrast["core"][ch]
        im[label == 3] = contrast["et"][ch]
        im = ndimage.gaussian_filter(im, 0.6)
        bias = np.exp(0.25 * _smooth_field(rng, shape, [40.0 / s for s in spacing]))
        sigma = 0.07
        im = np.sqrt((im * bias + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)  # Rician
        channels.append(np.where(brain, im, 0.0))
    return np.stack(channels).astype(np.float32), label, spacing


_MAKERS = {"liver": _liver_case, "tumour": _tumour_case}
_META = {
    "liver": {"name": "fastgsl-liver", "description": "generated CT-like binary liver task (imitates LiTS)",
              "modality": {"0": "CT"}, "labels": {"0": "background", "1": "liver"}},
    "tumour": {"name": "fastgsl-tumour", "description": "generated MR-like brain tumour task (imitates BraTS)",
               "modality": {"0": "T1", "1": "T1c", "2": "T2", "3": "FLAIR"},
               "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}},
}


def generate_case(task: str, seed: int, index: int):
    """One case ``(image (C, *sp) float32, label (*sp) uint8, spacing)``, a pure function of its arguments."""
    if task not in _MAKERS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return _MAKERS[task](np.random.default_rng([seed, index, TASKS.index(task)]))


def write_nifti(path: Path, array: np.ndarray, spacing) -> None:
    import nibabel as nib
    affine = np.diag(list(spacing) + [1.0])
    img = nib.Nifti1Image(array, affine)
    img.header.set_zooms(tuple(float(s) for s in spacing) + (1.0,) * (array.ndim - 3))
    nib.save(img, str(path))


def ensure_dataset(root, task: str, num_cases: int, seed: int = 0) -> Path:
    """Create ``root/<task>-<num_cases>-s<seed>`` in MSD layout if it is missing and return its path.

    A finished dataset carries ``dataset.json`` (written last, atomically), so a half-written folder is
    regenerated rather than trusted.
    """
    if num_cases < 2:
        raise ValueError(f"the generated dataset needs at least 2 cases, got {num_cases}")
    folder = Path(root) / f"{task}-{num_cases}-s{seed}-v{GENERATOR_VERSION}"
    if (folder / "dataset.json").exists():
        return folder
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(num_cases):
        image, label, spacing = generate_case(task, seed, i)
        name = f"{task}_{i:03d}.nii.gz"
        # MSD stores multi-modal images as (X, Y, Z, modality)
        write_nifti(folder / "imagesTr" / name, np.moveaxis(image, 0, -1) if image.shape[0] > 1 else image[0],
                    spacing)
        write_nifti(folder / "labelsTr" / name, label, spacing)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = dict(_META[task], numTraining=num_cases, training=training, test=[],
                fastgsl_generator={"version": GENERATOR_VERSION, "seed": seed})
    tmp = folder / "dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / "dataset.json")
    return folder
