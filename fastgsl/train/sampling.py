"""Random training patches with nnU-Net-style augmentation, reproducible per global batch position.

Sample ``j`` of the global batch at ``(epoch, step)`` draws everything from
``numpy.random.default_rng([seed, epoch, step, j])``, so the patches do not depend on how the global batch is
split over DDP ranks or data-loader workers: one process with batch 2 sees exactly what two ranks with batch 1
see together.

Patch choice follows nnU-Net: the last third of each global batch (``oversample_foreground_percent = 0.33``)
is centred on a random foreground voxel, the rest is uniform.  Augmentation follows nnU-Net's default
intensity transforms and mirroring, with its probabilities: Gaussian noise (p 0.1, variance U(0, 0.1)),
Gaussian blur (p 0.2, sigma U(0.5, 1), each channel p 0.5), multiplicative brightness (p 0.15, U(0.75, 1.25)),
contrast (p 0.15, U(0.75, 1.25)), inverted gamma (p 0.1) and gamma (p 0.3) with gamma U(0.7, 1.5), and
mirroring of each axis (p 0.5).  nnU-Net's rotation, scaling and low-resolution simulation are left out: they
would make a precomputed whole-volume DTM (``--dtm precomputed``) wrong for the patch, and the two DTM modes
must see the same patches.

With ``--dtm precomputed`` the DTM of the whole (padded) volume is cropped and mirrored with the patch
(mirroring keeps it exact).  With ``--dtm on-the-fly`` no DTM is returned and the loss computes the DTM of the
augmented patch itself, on the logits' device.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from fastgsl.train.preprocess import Case, TaskSpec

FOREGROUND_FRACTION = 0.33
MAX_FG_VOXELS = 10000


def pad_case(case: Case, patch) -> Case:
    """Pad ``case`` (symmetrically) so every axis is at least the patch size; images with their minimum."""
    shape = case.image.shape[1:]
    pads = [(max(0, p - n) // 2, max(0, p - n) - max(0, p - n) // 2) for n, p in zip(shape, patch)]
    if not any(a or b for a, b in pads):
        return case
    image = np.stack([np.pad(ch, pads, constant_values=float(ch.min())) for ch in case.image])
    tpads = pads if case.target.ndim == len(patch) else [(0, 0)] + pads
    return Case(case.name, image, np.pad(case.target, tpads), case.spacing)


def whole_volume_dtm(case: Case, spec: TaskSpec) -> np.ndarray:
    """DTM ``(C, *sp)`` of every channel the network predicts (``fastgsl.dtm``, ITK convention, with spacing)."""
    from fastgsl.dtm import labels_to_dtm, signed_distance
    t = torch.from_numpy(case.target.astype(np.int64))
    if spec.kind == "labels":
        return labels_to_dtm(t[None], spec.out_channels, case.spacing)[0].numpy()
    return signed_distance(t, case.spacing, spatial_dims=3).numpy()


def foreground_index(case: Case, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of (at most ``MAX_FG_VOXELS``) foreground voxels, for foreground oversampling."""
    fg = case.target > 0 if case.target.ndim == case.image.ndim - 1 else case.target.any(0)
    idx = np.flatnonzero(fg)
    if idx.size > MAX_FG_VOXELS:
        idx = np.sort(rng.choice(idx, MAX_FG_VOXELS, replace=False))
    return idx


def augment_intensity(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """nnU-Net's default intensity augmentation of a ``(C, *sp)`` patch (module docstring)."""
    img = img.astype(np.float32, copy=True)
    if rng.uniform() < 0.1:
        img += rng.normal(0.0, np.sqrt(rng.uniform(0.0, 0.1)), img.shape).astype(np.float32)
    if rng.uniform() < 0.2:
        for c in range(img.shape[0]):
            if rng.uniform() < 0.5:
                img[c] = ndimage.gaussian_filter(img[c], rng.uniform(0.5, 1.0))
    if rng.uniform() < 0.15:
        img *= rng.uniform(0.75, 1.25)
    if rng.uniform() < 0.15:
        f = rng.uniform(0.75, 1.25)
        for c in range(img.shape[0]):
            lo, hi, m = img[c].min(), img[c].max(), img[c].mean()
            img[c] = np.clip((img[c] - m) * f + m, lo, hi)
    for invert, p in ((True, 0.1), (False, 0.3)):
        if rng.uniform() < p:
            gamma = rng.uniform(0.7, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, 1.5)
            for c in range(img.shape[0]):
                x = -img[c] if invert else img[c]
                m, s = x.mean(), x.std()
                lo, rng_ = x.min(), x.max() - x.min()
                x = ((x - lo) / (rng_ + 1e-7)) ** gamma * (rng_ + 1e-7) + lo
                x = (x - x.mean()) / (x.std() + 1e-8) * s + m  # nnU-Net retains the mean and std
                img[c] = -x if invert else x
    return img


class PatchDataset(torch.utils.data.Dataset):
    """One epoch of training patches for one rank: item ``k`` is step ``k // local_batch``, global batch
    position ``rank * local_batch + k % local_batch``.

    Each item is a dict with ``image (C, *patch)`` float32, ``target`` (labels ``(*patch)`` int64 or regions
    ``(R, *patch)`` float32) and, with precomputed DTMs, ``dtm (C_out, *patch)`` float32.
    """

    def __init__(self, cases: list, spec: TaskSpec, patch, *, seed: int, epoch: int, steps: int,
                 global_batch: int, rank: int = 0, world: int = 1, dtms: list | None = None,
                 augment: bool = True):
        if global_batch % world:
            raise ValueError(f"--batch-size {global_batch} is not divisible by the {world} DDP processes")
        self.cases, self.spec, self.patch = cases, spec, tuple(patch)
        self.seed, self.epoch, self.steps = seed, epoch, steps
        self.global_batch, self.local = global_batch, global_batch // world
        self.rank, self.dtms, self.augment = rank, dtms, augment
        fg_rng = np.random.default_rng([seed, 7])
        self.fg = [foreground_index(c, fg_rng) for c in cases]
        for c in cases:
            if any(n < p for n, p in zip(c.image.shape[1:], self.patch)):
                raise ValueError(f"case {c.name} of shape {c.image.shape[1:]} is smaller than the patch "
                                 f"{self.patch}; pad it with pad_case first")

    def __len__(self) -> int:
        return self.steps * self.local

    def __getitem__(self, k: int) -> dict:
        step, j = divmod(k, self.local)
        g = self.rank * self.local + j
        rng = np.random.default_rng([self.seed, self.epoch, step, g])
        ci = int(rng.integers(len(self.cases)))
        case = self.cases[ci]
        shape = case.image.shape[1:]
        force_fg = g >= round(self.global_batch * (1 - FOREGROUND_FRACTION))
        if force_fg and self.fg[ci].size:
            centre = np.unravel_index(self.fg[ci][rng.integers(self.fg[ci].size)], shape)
            start = [int(np.clip(c - p // 2, 0, n - p)) for c, p, n in zip(centre, self.patch, shape)]
        else:
            start = [int(rng.integers(0, n - p + 1)) for n, p in zip(shape, self.patch)]
        box = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
        image = case.image[(slice(None),) + box]
        target = case.target[box] if self.spec.kind == "labels" else case.target[(slice(None),) + box]
        dtm = None if self.dtms is None else self.dtms[ci][(slice(None),) + box]
        if self.augment:
            image = augment_intensity(image, rng)
            flips = [ax for ax in range(len(self.patch)) if rng.uniform() < 0.5]
            if flips:
                image = np.flip(image, [a + 1 for a in flips])
                target = np.flip(target, [a + (0 if self.spec.kind == "labels" else 1) for a in flips])
                if dtm is not None:
                    dtm = np.flip(dtm, [a + 1 for a in flips])
        out = {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))}
        if self.spec.kind == "labels":
            out["target"] = torch.from_numpy(np.ascontiguousarray(target, dtype=np.int64))
        else:
            out["target"] = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
        if dtm is not None:
            out["dtm"] = torch.from_numpy(np.ascontiguousarray(dtm, dtype=np.float32))
        return out
