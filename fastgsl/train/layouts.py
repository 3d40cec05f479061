"""Raw dataset folders: the Medical Segmentation Decathlon (MSD) and the nnU-Net v2 raw layouts, detected from
``dataset.json``, and the checked reading of their training cases.

MSD (``modality`` present)
    ``dataset.json`` has ``modality`` (``{"0": "CT"}``), ``labels`` as value -> name (``{"0": "background",
    "1": "liver"}``) and a ``training`` list of ``{"image": "./imagesTr/x.nii.gz", "label": ...}``.  A
    multi-modal image is one 4-D file ``(X, Y, Z, modality)``.
nnU-Net v2 raw (``channel_names`` present; nnunetv2's ``dataset.json`` format, ``documentation/dataset_format.md``)
    ``dataset.json`` has ``channel_names`` (``{"0": "T2", "1": "ADC"}``), ``labels`` as name -> value, or
    name -> list of values for a region (``{"background": 0, "whole tumor": [1, 2, 3], ...}``, which then needs
    ``regions_class_order``), an optional ``"ignore"`` label, ``numTraining`` and ``file_ending``.  Case ``x``
    is ``imagesTr/x_0000<ending>``, ``x_0001<ending>``, ... (one file per channel) and ``labelsTr/x<ending>``;
    the optional ``dataset`` entry lists the files explicitly instead.

Files ending in ``.nii`` / ``.nii.gz`` are read with nibabel, any other ending with SimpleITK.  Arrays keep the
voxel axis order ``(i, j, k)`` of NIfTI (SimpleITK's ``(z, y, x)`` arrays are transposed to it) and the spacing
is given in that order, in mm; images come back channel-first ``(C, X, Y, Z)``.

Every check happens here, once, and each error names the case and the file: a missing file, a channel count
that disagrees with ``dataset.json``, a 2-D image (the training script trains a 3-D network), image and label
shapes or spacings that disagree, a label value ``dataset.json`` does not list, and a label map with no
foreground.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAYOUTS = ("msd", "nnunetv2")


class DatasetError(ValueError):
    """A dataset folder, its ``dataset.json`` or one of its cases is not what training needs (the message says
    what, naming the case and the file); ``python -m fastgsl.train`` prints it without a traceback."""


@dataclass
class RawCase:
    """One training case as stored: ``image (C, *sp)`` float32, ``label (*sp)`` int, spacing per axis in mm."""

    name: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple


@dataclass
class DatasetInfo:
    """What ``dataset.json`` says about a folder.

    ``labels``: every integer label value -> its name (background included, the ignore label not).
    ``regions``: nnU-Net v2 region labels ``[(name, (values, ...))]`` in ``dataset.json`` order, else None.
    ``entries``: ``[(case, [image file per channel], label file)]`` (MSD: one image file for all channels).
    ``generated``: the folder is fastgsl's built-in data (``fastgsl.train.synthetic``).
    """

    root: Path
    name: str
    layout: str
    modalities: list
    labels: dict
    entries: list
    regions: list | None = None
    regions_class_order: list | None = None
    ignore_label: int | None = None
    file_ending: str = ".nii.gz"
    generated: bool = False

    @property
    def is_ct(self) -> bool:
        return any(is_ct_channel(m) for m in self.modalities)

    @property
    def label_values(self) -> set:
        """Values a label file may hold."""
        values = set(self.labels)
        return values | ({self.ignore_label} if self.ignore_label is not None else set())


def is_ct_channel(name: str) -> bool:
    """nnU-Net's rule: a channel named CT (any case) gets the CT normalisation."""
    return str(name).strip().casefold() == "ct"


def _channels(mapping, path: Path, key: str) -> list:
    try:
        order = sorted(mapping, key=int)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {key} must map channel numbers '0', '1', ... to names, got {mapping!r}")
    if [int(k) for k in order] != list(range(len(order))) or not order:
        raise DatasetError(f"{path}: {key} must number the channels 0, 1, ..., {len(order) - 1}, got {sorted(mapping)}")
    return [str(mapping[k]) for k in order]


def detect_layout(meta: dict, path: Path) -> str:
    """``"msd"`` or ``"nnunetv2"`` from the keys of a ``dataset.json``."""
    msd, nnu = "modality" in meta, "channel_names" in meta
    if msd and nnu:
        raise DatasetError(f"{path} has both 'modality' (MSD) and 'channel_names' (nnU-Net v2): cannot tell the "
                           "layout")
    if nnu:
        return "nnunetv2"
    if msd:
        return "msd"
    raise DatasetError(f"{path} is neither an MSD dataset.json (needs 'modality', 'labels', 'training') nor an "
                       "nnU-Net v2 one (needs 'channel_names', 'labels', 'numTraining', 'file_ending')")


def read_dataset(root) -> DatasetInfo:
    """Read and check ``root/dataset.json`` and the presence of every file it implies."""
    root = Path(root)
    path = root / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a dataset folder: {path} is missing (expected an MSD or nnU-Net v2 "
                                "raw folder: dataset.json, imagesTr/, labelsTr/)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path} is not valid JSON: {e}") from e
    layout = detect_layout(meta, path)
    info = _read_msd(root, meta, path) if layout == "msd" else _read_nnunet(root, meta, path)
    if not info.entries:
        raise DatasetError(f"{path} lists no training cases")
    names = [e[0] for e in info.entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{path}: case names {dup} appear more than once")
    for name, images, label in info.entries:
        for f in [*images, label]:
            if not f.is_file():
                raise FileNotFoundError(f"case {name}: missing file {f}")
    if "numTraining" in meta and int(meta["numTraining"]) != len(info.entries):
        raise DatasetError(f"{path}: numTraining is {meta['numTraining']} but {len(info.entries)} training cases "
                           "were found")
    info.generated = "fastgsl_generator" in meta
    return info


def _read_msd(root: Path, meta: dict, path: Path) -> DatasetInfo:
    for key in ("modality", "labels", "training"):
        if key not in meta:
            raise DatasetError(f"{path} has no {key!r} entry (an MSD dataset.json needs modality, labels, training)")
    modalities = _channels(meta["modality"], path, "modality")
    try:
        labels = {int(k): str(v) for k, v in meta["labels"].items()}
    except (TypeError, ValueError, AttributeError):
        raise DatasetError(f"{path}: MSD labels map values to names ({{'0': 'background', '1': ...}}), got "
                           f"{meta['labels']!r}")
    entries = []
    for item in meta["training"]:
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            raise DatasetError(f"{path}: every 'training' entry needs 'image' and 'label', got {item!r}")
        name = Path(item["image"]).name
        name = name[:-7] if name.endswith(".nii.gz") else Path(name).stem
        entries.append((name, [root / item["image"]], root / item["label"]))
    return DatasetInfo(root, meta.get("name", root.name), "msd", modalities, labels, entries)


def _read_nnunet(root: Path, meta: dict, path: Path) -> DatasetInfo:
    for key in ("channel_names", "labels", "file_ending"):
        if key not in meta:
            raise DatasetError(f"{path} has no {key!r} entry (an nnU-Net v2 dataset.json needs channel_names, labels, "
                               "numTraining, file_ending)")
    modalities = _channels(meta["channel_names"], path, "channel_names")
    ending = str(meta["file_ending"])
    labels, regions, ignore = {}, [], None
    for name, value in meta["labels"].items():
        if name == "ignore":
            if not isinstance(value, int) or isinstance(value, bool):
                raise DatasetError(f"{path}: the ignore label must be one integer, got {value!r}")
            ignore = value
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DatasetError(f"{path}: label {name!r} must be an integer or a list of integers, got {value!r}")
        if isinstance(value, (list, tuple)) and len(values) > 1:
            regions.append((name, tuple(values)))
        elif values[0] == 0:
            labels[0] = name
        else:
            regions.append((name, (values[0],)))
            labels.setdefault(values[0], name)
    if 0 not in labels:
        raise DatasetError(f"{path}: nnU-Net labels need a background entry with value 0, got {meta['labels']!r}")
    order = meta.get("regions_class_order")
    has_regions = any(len(v) > 1 for _, v in regions)
    if has_regions or order is not None:
        if order is None:
            raise DatasetError(f"{path}: labels define regions (lists of values) but there is no regions_class_order")
        if len(order) != len(regions):
            raise DatasetError(f"{path}: regions_class_order has {len(order)} entries for {len(regions)} regions")
        for _, vals in regions:
            for v in vals:
                labels.setdefault(v, f"label {v}")
    else:
        regions, order = None, None
    if "dataset" in meta:
        entries = [(case, [root / p for p in item["images"]], root / item["label"])
                   for case, item in meta["dataset"].items()]
    else:
        entries = _scan_nnunet(root, ending, len(modalities))
    return DatasetInfo(root, meta.get("name", root.name), "nnunetv2", modalities, labels, entries, regions, order,
                       ignore, ending)


def _scan_nnunet(root: Path, ending: str, channels: int) -> list:
    images, labels = root / "imagesTr", root / "labelsTr"
    for d in (images, labels):
        if not d.is_dir():
            raise FileNotFoundError(f"{d} is missing (an nnU-Net v2 raw folder has imagesTr/ and labelsTr/)")
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    found: dict = {}
    for f in sorted(images.iterdir()):
        m = pattern.match(f.name)
        if m is None:
            if f.name.endswith(ending):
                raise DatasetError(f"{f}: an nnU-Net v2 image is named <case>_<4-digit channel>{ending}")
            continue
        found.setdefault(m.group(1), []).append(int(m.group(2)))
    entries = []
    for case, chans in found.items():
        extra = sorted(c for c in chans if c >= channels)
        if extra:
            raise DatasetError(f"case {case}: {images / f'{case}_{extra[0]:04d}{ending}'} is channel {extra[0]} but "
                               f"dataset.json's channel_names lists {channels} channel(s)")
        files = [images / f"{case}_{c:04d}{ending}" for c in range(channels)]
        entries.append((case, files, labels / f"{case}{ending}"))
    cases = set(found)
    for f in sorted(labels.iterdir()):
        if f.name.endswith(ending) and f.name[:-len(ending)] not in cases:
            raise FileNotFoundError(f"case {f.name[:-len(ending)]}: {f} has no image: "
                                    f"{images / (f.name[:-len(ending)] + '_0000' + ending)} is missing")
    return entries


def read_image(path: Path) -> tuple:
    """``(array in (i, j, k) order, spacing per spatial axis)``: nibabel for NIfTI, SimpleITK otherwise."""
    name = path.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        import nibabel as nib
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj)
        zooms = img.header.get_zooms()
        return arr, tuple(float(z) for z in zooms[:min(arr.ndim, 3)])
    import SimpleITK as sitk
    img = sitk.ReadImage(str(path))
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"{path}: {img.GetNumberOfComponentsPerPixel()} components per pixel; store one channel "
                           "per file")
    arr = sitk.GetArrayFromImage(img)
    return np.ascontiguousarray(arr.transpose(tuple(range(arr.ndim))[::-1])), tuple(float(s) for s in img.GetSpacing())


def _refuse_2d(name: str, path: Path, shape) -> None:
    if len(shape) != 3 or min(shape) == 1:
        raise DatasetError(f"case {name}: {path} has spatial shape {tuple(shape)}: a 2-D dataset is not supported "
                           "(the training script trains a 3-D U-Net and computes 3-D surface distances)")


def load_case(info: DatasetInfo, index: int) -> RawCase:
    """Read and check one training case (module docstring)."""
    name, img_paths, lab_path = info.entries[index]
    n = len(info.modalities)
    if info.layout == "msd":
        (img_path,) = img_paths
        image, spacing = read_image(img_path)
        if image.ndim == 4:
            image = np.moveaxis(image, -1, 0)
        elif image.ndim in (2, 3):
            image = image[None]
        else:
            raise DatasetError(f"case {name}: {img_path} has shape {image.shape}; expected 3-D (X, Y, Z) or 4-D "
                               "(X, Y, Z, modality)")
        if image.shape[0] != n:
            raise DatasetError(f"case {name}: {img_path} has {image.shape[0]} channel(s) but dataset.json lists {n} "
                               f"modalities {info.modalities}")
        _refuse_2d(name, img_path, image.shape[1:])
    else:
        chans, spacing = [], None
        for c, p in enumerate(img_paths):
            arr, sp = read_image(p)
            _refuse_2d(name, p, arr.shape)
            if chans and arr.shape != chans[0].shape:
                raise DatasetError(f"case {name}: {p} has shape {arr.shape} but {img_paths[0]} has {chans[0].shape}")
            if spacing is not None and not np.allclose(sp, spacing, rtol=1e-3):
                raise DatasetError(f"case {name}: {p} has spacing {sp} but {img_paths[0]} has {spacing}")
            chans.append(arr)
            spacing = sp if spacing is None else spacing
        image = np.stack(chans)
    image = image.astype(np.float32)
    label, lspacing = read_image(lab_path)
    if label.shape != image.shape[1:]:
        raise DatasetError(f"case {name}: label {lab_path} has shape {label.shape} but the image has {image.shape[1:]}")
    if not np.allclose(spacing, lspacing, rtol=1e-3):
        raise DatasetError(f"case {name}: label {lab_path} has spacing {lspacing} but the image has {spacing}")
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(np.isfinite(label)) or not np.array_equal(label, np.rint(label)):
            raise DatasetError(f"case {name}: label {lab_path} holds non-integer values")
    label = label.astype(np.int64)
    present = set(np.unique(label).tolist())
    unknown = present - info.label_values
    if unknown:
        raise DatasetError(f"case {name}: label {lab_path} holds values {sorted(unknown)} that dataset.json's labels "
                           f"do not list ({sorted(info.label_values)})")
    if not present - {0, info.ignore_label}:
        raise DatasetError(f"case {name}: label {lab_path} is empty (background only): a training case needs "
                           "foreground")
    if label.max() > np.iinfo(np.int16).max or label.min() < np.iinfo(np.int16).min:
        raise DatasetError(f"case {name}: label {lab_path} holds values outside int16")
    return RawCase(name, image, label.astype(np.int16), tuple(float(s) for s in spacing))
