"""Tiny dataset folders on disk for the training script's tests: MSD and nnU-Net v2 raw layouts, written the way
those datasets are (NIfTI through nibabel, other file endings through SimpleITK)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_nifti(path: Path, arr, spacing) -> None:
    import nibabel as nib

    arr = np.asarray(arr)
    img = nib.Nifti1Image(arr, np.diag(list(spacing)[:3] + [1.0] * (4 - min(len(spacing), 3))))
    img.header.set_zooms(tuple(spacing) + (1.0,) * (arr.ndim - len(spacing)))
    nib.save(img, str(path))


def write_nnunet(root: Path, cases, channels: dict, labels: dict, ending: str = ".nii.gz", **meta) -> Path:
    """``cases``: ``[(name, [one array per channel], label, spacing)]``, written as nnU-Net v2 raw."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for name, chans, label, spacing in cases:
        for c, arr in enumerate(chans):
            write_image(root / "imagesTr" / f"{name}_{c:04d}{ending}", arr, spacing)
        write_image(root / "labelsTr" / f"{name}{ending}", label, spacing)
    (root / "dataset.json").write_text(json.dumps({"name": root.name, "channel_names": channels, "labels": labels,
                                                   "numTraining": len(cases), "file_ending": ending, **meta}))
    return root


def write_image(path: Path, arr, spacing) -> None:
    """NIfTI for ``.nii``/``.nii.gz``, else SimpleITK (axes reversed into ITK order)."""
    if path.name.endswith((".nii", ".nii.gz")):
        write_nifti(path, arr, spacing)
        return
    import SimpleITK as sitk  # only for the non-NIfTI endings

    img = sitk.GetImageFromArray(np.asarray(arr).transpose(tuple(range(np.ndim(arr)))[::-1]))
    img.SetSpacing(tuple(float(s) for s in spacing))
    sitk.WriteImage(img, str(path))


def write_msd(root: Path, cases, modality: dict, labels: dict) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for name, image, label, spacing in cases:
        write_nifti(root / "imagesTr" / f"{name}.nii.gz", image, spacing)
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", label, spacing)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"name": root.name, "modality": modality, "labels": labels,
                                                   "training": training}))
    return root
