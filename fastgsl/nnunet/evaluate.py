"""``fastgsl-nnunet evaluate``: nnU-Net's ``summary.json``, plus HD95, ASD and NSD from ``fastgsl.metrics``.

Arguments mirror ``nnUNetv2_evaluate_folder`` (nnunetv2 2.8.1, ``evaluation/evaluate_predictions.py``): the
labels or regions and the ignore label come from the plans and dataset.json, the file reader is the one
dataset.json names (``determine_reader_writer_from_dataset_json``: NIfTI, NRRD, MHA, TIFF, PNG ...), and the
predicted files are matched to reference files by name.

Per case and label / region ``r`` (``M_ref``, ``M_pred`` the voxels of ``r``; ignored voxels, those of the ignore
label in the reference, are left out of every count and removed from the predicted mask):

* nnU-Net's metrics, same names and formulas: ``TP, FP, FN, TN``, ``n_pred = TP + FP``, ``n_ref = TP + FN``,
  ``Dice = 2 TP / (2 TP + FP + FN)`` and ``IoU = TP / (TP + FP + FN)``, both nan when ``TP + FP + FN = 0``;
* ``HD95``, ``ASD`` and ``NSD`` (at ``--tolerance``, in the spacing's units) in MONAI's convention
  (``fastgsl.metrics`` ``convention="monai"``: edge voxels, symmetric ASD over both directed sets; nan when both
  masks are empty, inf when one is), and ``HD95_paper``, ``ASD_paper``, ``NSD_paper`` in the paper's
  (``convention="paper"``: SimpleITK surfaces; 0 when both are empty, the image diagonal when one is).
  The spacing is the reader's, in the array's axis order.  An image nnU-Net reads as one slice (2-D data) is
  measured in 2-D.

Means are nnU-Net's: ``np.nanmean`` over the cases per label / region, and ``foreground_mean`` the mean over
labels except 0.  Infinite values propagate into the means, as nan does not.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fastgsl.metrics import average_surface_distance, hausdorff_distance, surface_dice

#: the surface metrics added to nnU-Net's, per convention: name suffix and ``fastgsl.metrics`` convention
CONVENTION_SUFFIX = {"monai": "", "paper": "_paper"}


def _masks(seg: np.ndarray, labels_or_regions) -> torch.Tensor:
    """``(R, *spatial)`` bool masks of the labels (int) or regions (tuples of labels) of a label map."""
    seg = torch.from_numpy(np.ascontiguousarray(seg))
    out = []
    for r in labels_or_regions:
        if isinstance(r, (tuple, list)):
            out.append(torch.isin(seg, torch.tensor(list(r), dtype=seg.dtype)))
        else:
            out.append(seg == r)
    return torch.stack(out)


def case_metrics(seg_ref: np.ndarray, seg_pred: np.ndarray, spacing, labels_or_regions, ignore_label=None, *,
                 tolerance: float = 1.0, conventions=("monai", "paper")) -> dict:
    """The metrics of one case: ``{label_or_region: {metric: value}}`` (module docstring).

    ``seg_ref`` and ``seg_pred`` are label maps of one shape (a leading channel of size 1 is dropped), ``spacing``
    one number per spatial axis.
    """
    seg_ref, seg_pred = np.asarray(seg_ref), np.asarray(seg_pred)
    if seg_ref.shape != seg_pred.shape:
        raise ValueError(f"reference and prediction shapes differ: {seg_ref.shape} and {seg_pred.shape}")
    if seg_ref.ndim == 4 and seg_ref.shape[0] == 1:
        seg_ref, seg_pred = seg_ref[0], seg_pred[0]
    spacing = [float(s) for s in spacing]
    if len(spacing) != seg_ref.ndim:
        raise ValueError(f"spacing {spacing} does not match the image's {seg_ref.ndim} axes {seg_ref.shape}")
    if seg_ref.ndim == 3 and seg_ref.shape[0] == 1:  # nnU-Net's (1, H, W) form of a 2-D image
        seg_ref, seg_pred, spacing = seg_ref[0], seg_pred[0], spacing[1:]
    ref, pred = _masks(seg_ref, labels_or_regions), _masks(seg_pred, labels_or_regions)
    if ignore_label is not None:
        keep = torch.from_numpy(np.ascontiguousarray(seg_ref != ignore_label))
        pred &= keep
    else:
        keep = None
    tp = (ref & pred).flatten(1).sum(1)
    fp = (~ref & pred).flatten(1).sum(1)
    fn = (ref & ~pred).flatten(1).sum(1)
    tn = (~ref & ~pred)
    tn = (tn if keep is None else tn & keep).flatten(1).sum(1)
    surface = {}
    p, t = pred.unsqueeze(0), ref.unsqueeze(0)
    for conv in conventions:
        sfx = CONVENTION_SUFFIX[conv]
        kw = dict(spacing=spacing, include_background=True, convention=conv)
        surface["HD95" + sfx] = hausdorff_distance(p, t, percentile=95, **kw)[0]
        surface["ASD" + sfx] = average_surface_distance(p, t, **kw)[0]
        surface["NSD" + sfx] = surface_dice(p, t, tolerance, **kw)[0]
    out = {}
    for i, r in enumerate(labels_or_regions):
        TP, FP, FN, TN = (int(v[i]) for v in (tp, fp, fn, tn))
        m = {}
        if TP + FP + FN == 0:
            m["Dice"] = m["IoU"] = float("nan")
        else:
            m["Dice"] = 2 * TP / (2 * TP + FP + FN)
            m["IoU"] = TP / (TP + FP + FN)
        m.update(FP=FP, TP=TP, FN=FN, TN=TN, n_pred=FP + TP, n_ref=FN + TP)
        m.update({k: float(v[i]) for k, v in surface.items()})
        out[tuple(r) if isinstance(r, list) else r] = m
    return out


def evaluate_folder(folder_ref: str, folder_pred: str, dataset_json_file: str, plans_file: str,
                    output_file: str | None = None, num_processes: int = 2, chill: bool = False,
                    tolerance: float = 1.0, conventions=("monai", "paper"), progress: bool = True) -> dict:
    """Evaluate every prediction of ``folder_pred`` against ``folder_ref``; writes and returns the summary.

    ``output_file`` defaults to ``folder_pred/summary.json``; ``num_processes`` threads read the files;
    ``chill`` allows references without a prediction (nnU-Net's ``--chill``).
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.evaluation.evaluate_predictions import save_summary_json
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from tqdm import tqdm

    for name, path in (("reference folder", folder_ref), ("prediction folder", folder_pred)):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{name} {path} does not exist")
    for name, path in (("dataset.json", dataset_json_file), ("plans file", plans_file)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name} {path} does not exist")
    if output_file is not None and not output_file.endswith(".json"):
        raise ValueError(f"output_file must end with .json, got {output_file}")
    unknown = set(conventions) - set(CONVENTION_SUFFIX)
    if unknown or not conventions:
        raise ValueError(f"conventions must be a non-empty subset of {tuple(CONVENTION_SUFFIX)}, got {conventions}")
    dataset_json = load_json(dataset_json_file)
    ending = dataset_json["file_ending"]
    files_pred = sorted(f for f in os.listdir(folder_pred) if f.endswith(ending))
    files_ref = sorted(f for f in os.listdir(folder_ref) if f.endswith(ending))
    if not files_pred:
        raise FileNotFoundError(f"no {ending} files in the prediction folder {folder_pred}")
    missing_ref = [f for f in files_pred if f not in files_ref]
    if missing_ref:
        raise FileNotFoundError(f"predictions without a reference in {folder_ref}: {missing_ref}")
    if not chill:
        missing = [f for f in files_ref if f not in files_pred]
        if missing:
            raise FileNotFoundError(f"references without a prediction in {folder_pred} (pass --chill to allow): "
                                    f"{missing}")
    reader = determine_reader_writer_from_dataset_json(dataset_json, os.path.join(folder_ref, files_pred[0]))()
    lm = PlansManager(plans_file).get_label_manager(dataset_json)
    labels = lm.foreground_regions if lm.has_regions else lm.foreground_labels

    def read(name):
        ref, props = reader.read_seg(os.path.join(folder_ref, name))
        pred, _ = reader.read_seg(os.path.join(folder_pred, name))
        return name, ref, pred, props["spacing"]

    results = []
    with ThreadPoolExecutor(max(1, int(num_processes))) as pool:
        for name, ref, pred, spacing in tqdm(pool.map(read, files_pred), total=len(files_pred), desc="cases",
                                             disable=not progress):
            metrics = case_metrics(ref, pred, spacing, labels, lm.ignore_label, tolerance=tolerance,
                                   conventions=conventions)
            results.append({"reference_file": os.path.join(folder_ref, name),
                             "prediction_file": os.path.join(folder_pred, name), "metrics": metrics})
    keys = list(results[0]["metrics"].keys())
    names = list(results[0]["metrics"][keys[0]].keys())
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-nan column is nan, as nnU-Net's
            means = {k: {m: float(np.nanmean([c["metrics"][k][m] for c in results])) for m in names} for k in keys}
            fg = {m: float(np.mean([means[k][m] for k in keys if k not in (0, "0")])) for m in names}
    summary = {"metric_per_case": results, "mean": means, "foreground_mean": fg}
    recursive_fix_for_json_export(summary)
    save_summary_json(summary, output_file or os.path.join(folder_pred, "summary.json"))
    return summary
