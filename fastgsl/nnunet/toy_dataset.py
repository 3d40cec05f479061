"""A small generated 3-D dataset in nnU-Net v2's raw layout, for smoke runs and benchmarks (no download).

Each case is an anisotropic volume (spacing 2 x 1 x 1 mm in array order) with an ellipsoidal organ (label 1)
holding a smaller lesion (label 2) near its rim, at a random place and size, and an MR-like image: the label's
mean intensity plus Gaussian noise.  ``write_dataset`` writes ``imagesTr``, ``labelsTr`` (NIfTI) and
``dataset.json`` under ``nnUNet_raw/DatasetXXX_Name``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPACING = (2.0, 1.0, 1.0)  # array axis order (z, y, x)
LABELS = {"background": 0, "organ": 1, "lesion": 2}


def make_case(shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32, labels uint8)`` of one case of ``shape`` (array order)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) * s for n, s in zip(shape, SPACING)], indexing="ij")
    extent = np.array([n * s for n, s in zip(shape, SPACING)])
    centre = extent * rng.uniform(0.4, 0.6, 3)
    radii = extent * rng.uniform(0.22, 0.32, 3)
    organ = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    lc = centre + 0.6 * radii * direction
    lesion = sum((g - c) ** 2 for g, c in zip(grids, lc)) <= (0.35 * radii.min()) ** 2
    labels = np.zeros(shape, np.uint8)
    labels[organ] = 1
    labels[organ & lesion] = 2
    image = np.choose(labels, [0.0, 2.0, 3.5]) + rng.normal(0.0, 0.6, shape)
    return image.astype(np.float32), labels


def write_dataset(raw: Path, dataset_id: int = 999, name: str = "FastGSLToy", num_cases: int = 6,
                  shape=(24, 48, 40), seed: int = 0) -> Path:
    """Write the dataset; returns its folder.  Needs SimpleITK (a dependency of nnunetv2)."""
    import SimpleITK as sitk

    folder = Path(raw) / f"Dataset{dataset_id:03d}_{name}"
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num_cases):
        image, labels = make_case(tuple(shape), rng)
        for arr, path in ((image, folder / "imagesTr" / f"case_{i:03d}_0000.nii.gz"),
                          (labels, folder / "labelsTr" / f"case_{i:03d}.nii.gz")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing(SPACING[::-1])  # SimpleITK's order is x, y, z
            sitk.WriteImage(img, str(path))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": LABELS, "numTraining": num_cases, "file_ending": ".nii.gz",
        "name": name}, indent=2))
    return folder
