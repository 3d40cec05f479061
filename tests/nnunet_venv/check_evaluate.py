"""Run inside the nnU-Net environment: fastgsl-nnunet evaluate against nnU-Net's own evaluation (every
summary.json metric) and MONAI's HD95, ASD and NSD on the same files; labels, regions, the ignore label, and the
reader dataset.json implies (NIfTI, MHA, NRRD)."""
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice
from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2, load_summary_json

from fastgsl.nnunet.cli import main

SPACING = (2.0, 0.75, 1.25)  # array order


def blob(shape, centre, radii):
    g = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((a - c) / r) ** 2 for a, c, r in zip(g, centre, radii)) <= 1


def write_cases(folder, ending, rng, ignore=None):
    """Reference / prediction pairs of 3 labels, with a one-voxel object, an object on the border, a shifted and
    a missing structure."""
    shape = (11, 27, 23)
    (folder / "gt").mkdir(parents=True)
    (folder / "pred").mkdir()
    for i in range(4):
        ref = np.zeros(shape, np.uint8)
        ref[blob(shape, (5, 13 + i, 11), (4, 9, 7))] = 1
        ref[blob(shape, (5, 10, 9), (2, 4, 3))] = 2
        ref[0, 0, :5] = 1  # on the border
        pred = ref.copy()
        pred[blob(shape, (5 + rng.integers(-1, 2), 14, 12 + i), (3, 8, 7))] = 1
        pred[rng.random(shape) < 0.01] = 2
        if i == 1:
            pred[pred == 2] = 0  # structure 2 missing in the prediction
            pred[8, 20, 20] = 2
        ref[10, 26, 22] = 2  # a one-voxel object in the reference
        if ignore is not None:
            ref[:, :4] = ignore  # a slab of ignored voxels
        for arr, sub in ((ref, "gt"), (pred, "pred")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing(SPACING[::-1])
            sitk.WriteImage(img, str(folder / sub / f"case{i}{ending}"))


def write_json(folder, labels, ending, regions_class_order=None):
    dj = {"channel_names": {"0": "MR"}, "labels": labels, "numTraining": 4, "file_ending": ending}
    if regions_class_order:
        dj["regions_class_order"] = regions_class_order
    (folder / "dataset.json").write_text(json.dumps(dj))
    (folder / "plans.json").write_text(json.dumps({"label_manager": "LabelManager"}))


def evaluate_both(folder):
    ours, theirs = folder / "ours.json", folder / "nnunet.json"
    assert main(["evaluate", str(folder / "gt"), str(folder / "pred"), "-djfile", str(folder / "dataset.json"),
                 "-pfile", str(folder / "plans.json"), "-o", str(ours), "--tolerance", "1.5", "--no-progress"]) == 0
    compute_metrics_on_folder2(str(folder / "gt"), str(folder / "pred"), str(folder / "dataset.json"),
                               str(folder / "plans.json"), str(theirs), num_processes=1)
    return load_summary_json(str(ours)), load_summary_json(str(theirs))


def assert_nnunet_metrics_equal(ours, theirs):
    assert len(ours["metric_per_case"]) == len(theirs["metric_per_case"]) == 4
    for a, b in zip(ours["metric_per_case"], theirs["metric_per_case"]):
        assert a["prediction_file"] == b["prediction_file"]
        assert set(a["metrics"]) == set(b["metrics"])
        for r, m in b["metrics"].items():
            for k, v in m.items():
                assert a["metrics"][r][k] == pytest.approx(v, nan_ok=True, rel=1e-12), (r, k)
    for r, m in theirs["mean"].items():
        for k, v in m.items():
            assert ours["mean"][r][k] == pytest.approx(v, nan_ok=True, rel=1e-12), (r, k)
    for k, v in theirs["foreground_mean"].items():
        assert ours["foreground_mean"][k] == pytest.approx(v, nan_ok=True, rel=1e-12), k


def masks(path, keys, ignore=None):
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    keep = np.ones_like(seg, bool) if ignore is None else seg != ignore
    return np.stack([np.isin(seg, k if isinstance(k, tuple) else (k,)) for k in keys]), keep


def assert_surface_metrics_equal_monai(ours, keys, ignore=None):
    n_compared = 0
    for case in ours["metric_per_case"]:
        ref, keep = masks(case["reference_file"], keys, ignore)
        pred, _ = masks(case["prediction_file"], keys)
        pred &= keep
        p, t = torch.from_numpy(pred[None]), torch.from_numpy(ref[None])
        hd = compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=list(SPACING))[0]
        asd = compute_average_surface_distance(p, t, include_background=True, symmetric=True,
                                               spacing=list(SPACING))[0]
        nsd = compute_surface_dice(p, t, [1.5] * len(keys), include_background=True, spacing=list(SPACING))[0]
        for j, k in enumerate(keys):
            m = case["metrics"][k]
            if pred[j].any() and ref[j].any():
                assert m["HD95"] == pytest.approx(float(hd[j]), rel=1e-5), (case["prediction_file"], k)
                n_compared += 1
            else:  # MONAI's HD95 is nan with one empty mask (its quantile of inf); fastgsl's is inf, as its HD
                assert math.isinf(m["HD95"]) and math.isnan(float(hd[j]))
            assert m["ASD"] == pytest.approx(float(asd[j]), rel=1e-5)
            assert m["NSD"] == pytest.approx(float(nsd[j]), rel=1e-5)
            assert m["HD95_paper"] >= 0 and m["ASD_paper"] >= 0 and 0 <= m["NSD_paper"] <= 1
    assert n_compared >= 6


@pytest.mark.parametrize("ending", [".nii.gz", ".mha", ".nrrd"])
def test_labels(tmp_path, ending):
    write_cases(tmp_path, ending, np.random.default_rng(0))
    write_json(tmp_path, {"background": 0, "a": 1, "b": 2}, ending)
    ours, theirs = evaluate_both(tmp_path)
    assert_nnunet_metrics_equal(ours, theirs)
    assert_surface_metrics_equal_monai(ours, [1, 2])


def test_regions(tmp_path):
    write_cases(tmp_path, ".nii.gz", np.random.default_rng(1))
    write_json(tmp_path, {"background": 0, "whole": [1, 2], "core": 2}, ".nii.gz", regions_class_order=[1, 2])
    ours, theirs = evaluate_both(tmp_path)
    assert set(ours["mean"]) == set(theirs["mean"]) == {(1, 2), 2}  # nnU-Net keys a one-label region by its label
    assert_nnunet_metrics_equal(ours, theirs)
    assert_surface_metrics_equal_monai(ours, [(1, 2), 2])


def test_ignore_label(tmp_path):
    write_cases(tmp_path, ".nii.gz", np.random.default_rng(2), ignore=3)
    write_json(tmp_path, {"background": 0, "a": 1, "b": 2, "ignore": 3}, ".nii.gz")
    ours, theirs = evaluate_both(tmp_path)
    assert_nnunet_metrics_equal(ours, theirs)
    assert_surface_metrics_equal_monai(ours, [1, 2], ignore=3)


def test_bad_folders_are_clear_errors(tmp_path):
    write_cases(tmp_path, ".nii.gz", np.random.default_rng(3))
    write_json(tmp_path, {"background": 0, "a": 1, "b": 2}, ".nii.gz")
    (tmp_path / "pred" / "case3.nii.gz").unlink()
    args = ["evaluate", str(tmp_path / "gt"), str(tmp_path / "pred"), "-djfile", str(tmp_path / "dataset.json"),
            "-pfile", str(tmp_path / "plans.json"), "--no-progress"]
    with pytest.raises(FileNotFoundError, match=r"references without a prediction .*case3.nii.gz"):
        main(args)
    assert main(args + ["--chill"]) == 0
    with pytest.raises(FileNotFoundError, match="prediction folder"):
        main(["evaluate", str(tmp_path / "gt"), str(tmp_path / "nope"), "-djfile", str(tmp_path / "dataset.json"),
              "-pfile", str(tmp_path / "plans.json")])
