"""Reading a Medical Segmentation Decathlon folder: ``dataset.json``, ``imagesTr/``, ``labelsTr/`` (NIfTI).

Arrays keep the file's voxel axis order (NIfTI i, j, k); the spacing is the header's zooms in that order.
Multi-modal images (MSD stores them as ``(X, Y, Z, modality)``) come back channel-first ``(C, X, Y, Z)``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RawCase:
    """One training case as stored: ``image (C, *sp)`` float32, ``label (*sp)`` int, spacing per axis in mm."""

    name: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple


@dataclass
class DatasetInfo:
    root: Path
    name: str
    modalities: list
    labels: dict          # int value -> name
    entries: list         # [(case name, image path, label path)]

    @property
    def is_ct(self) -> bool:
        return any(m.strip().upper() == "CT" for m in self.modalities)


def read_dataset_json(root) -> DatasetInfo:
    root = Path(root)
    path = root / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not an MSD dataset folder: {path} is missing")
    meta = json.loads(path.read_text())
    for key in ("modality", "labels", "training"):
        if key not in meta:
            raise ValueError(f"{path} has no {key!r} entry (an MSD dataset.json needs modality, labels, training)")
    modalities = [meta["modality"][k] for k in sorted(meta["modality"], key=int)]
    labels = {int(k): v for k, v in meta["labels"].items()}
    entries = []
    for item in meta["training"]:
        img, lab = root / item["image"], root / item["label"]
        name = Path(item["image"]).name.split(".nii")[0]
        entries.append((name, img, lab))
    if not entries:
        raise ValueError(f"{path} lists no training cases")
    return DatasetInfo(root, meta.get("name", root.name), modalities, labels, entries)


def _load_nifti(path: Path):
    import nibabel as nib
    if not path.is_file():
        raise FileNotFoundError(f"missing NIfTI file {path}")
    img = nib.load(str(path))
    return np.asarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms()[:3])


def load_case(info: DatasetInfo, index: int) -> RawCase:
    name, img_path, lab_path = info.entries[index]
    image, spacing = _load_nifti(img_path)
    label, lspacing = _load_nifti(lab_path)
    image = image.astype(np.float32)
    if image.ndim == 3:
        image = image[None]
    elif image.ndim == 4:
        image = np.moveaxis(image, -1, 0)
    else:
        raise ValueError(f"{img_path}: expected a 3-D or 4-D image, got shape {image.shape}")
    if image.shape[0] != len(info.modalities):
        raise ValueError(f"{img_path}: {image.shape[0]} channels but dataset.json lists {len(info.modalities)} "
                         "modalities")
    label = np.rint(label).astype(np.int16)
    if label.shape != image.shape[1:]:
        raise ValueError(f"{name}: label shape {label.shape} does not match image shape {image.shape[1:]}")
    if not np.allclose(spacing, lspacing, rtol=1e-3):
        raise ValueError(f"{name}: image spacing {spacing} and label spacing {lspacing} differ")
    unknown = set(np.unique(label).tolist()) - set(info.labels)
    if unknown:
        raise ValueError(f"{name}: label values {sorted(unknown)} are not in dataset.json's labels {info.labels}")
    return RawCase(name, image, label, spacing)
