"""fastgsl.train on any dataset: the MSD and nnU-Net v2 raw layouts, the task kinds (multi-class, regions,
binary only when asked), nnU-Net's normalisation per modality, resampling, the errors on bad cases, eq. 13 for
any C, the figures and the table for any number of classes, and three nnU-Net v2 datasets trained end to end
(multi-class MR, multi-modal, regions) with ``--preset smoke``.  Every dataset is a few tiny NIfTI (or MHA)
cases written here."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("monai", reason="the training script needs MONAI (the train extra)")
pytest.importorskip("nibabel", reason="the dataset readers need nibabel (the train extra)")
pytest.importorskip("matplotlib", reason="the figures need matplotlib (the train extra)")

from fastgsl.train import figures, layouts, preprocess, report  # noqa: E402
from fastgsl.train.__main__ import main  # noqa: E402
from fastgsl.train.cli import parse_config  # noqa: E402
from fastgsl.train.dataset import preprocess_dataset  # noqa: E402
from fastgsl.train.objectives import voxel_counts  # noqa: E402
from fastgsl.train.preprocess import Case, TaskSpec  # noqa: E402
from dataset_files import write_msd, write_nifti, write_nnunet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPE = (20, 20, 12)


# -- writing tiny datasets ------------------------------------------------------------------------------------------
def _tissue(rng, k: int, shape=SHAPE):
    """A label map with ``k`` nested blobs (values 1..k) and a matching intensity image (every voxel non-zero)."""
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum(g ** 2 for g in grid)) + 0.1 * rng.standard_normal() + 0.05 * rng.standard_normal(shape)
    label = np.zeros(shape, np.uint8)
    for v in range(1, k + 1):
        label[r < 0.95 - 0.25 * (v - 1)] = v
    image = 1.0 + 0.6 * label + 0.1 * rng.standard_normal(shape)
    return image.astype(np.float32), label


def _brain_tissue_msd(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    cases = [(f"b{i}", *_tissue(rng, 2), (1.0, 1.0, 2.0 + 0.5 * i)) for i in range(n)]
    return write_msd(root, cases, {"0": "MRI"}, {"0": "background", "1": "grey matter", "2": "white matter"})


def _multiclass_mr(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(1)
    cases = []
    for i in range(n):
        image, label = _tissue(rng, 2)
        cases.append((f"brain_{i:03d}", [image], label, (1.0, 1.0, 2.0 if i % 2 else 2.5)))
    return write_nnunet(root, cases, {"0": "T1"}, {"background": 0, "grey matter": 1, "white matter": 2})


def _multimodal(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(2)
    cases = []
    for i in range(n):
        image, label = _tissue(rng, 2)
        adc = 500.0 + 300.0 * (label == 1) - 200.0 * (label == 2) + 40.0 * rng.standard_normal(SHAPE)
        cases.append((f"prostate_{i:02d}", [100 * image, adc.astype(np.float32)], label, (1.0, 1.0, 2.0)))
    return write_nnunet(root, cases, {"0": "T2", "1": "ADC"}, {"background": 0, "peripheral zone": 1,
                                                          "transition zone": 2})


def _regions(root: Path, n: int = 4, names=("lesion", "core")) -> Path:
    rng = np.random.default_rng(3)
    cases = []
    for i in range(n):
        image, label = _tissue(rng, 2)
        cases.append((f"case{i}", [image], label, (1.0, 1.0, 2.0)))
    return write_nnunet(root, cases, {"0": "FLAIR"}, {"background": 0, names[0]: [1, 2], names[1]: 2},
                   regions_class_order=[1, 2])


def _csv(path: Path) -> list:
    with open(path) as f:
        return list(csv.DictReader(f))


# -- layouts and task kinds -----------------------------------------------------------------------------------------
def test_layout_detected_from_dataset_json(tmp_path):
    assert layouts.read_dataset(_brain_tissue_msd(tmp_path / "msd")).layout == "msd"
    info = layouts.read_dataset(_multimodal(tmp_path / "nnu"))
    assert info.layout == "nnunetv2" and info.modalities == ["T2", "ADC"] and len(info.entries) == 4
    assert [p.name for p in info.entries[0][1]] == ["prostate_00_0000.nii.gz", "prostate_00_0001.nii.gz"]
    assert info.labels == {0: "background", 1: "peripheral zone", 2: "transition zone"} and info.regions is None
    # nnU-Net's optional explicit file list, here naming the files of another folder
    listed = tmp_path / "listed"
    listed.mkdir()
    meta = json.loads((tmp_path / "nnu" / "dataset.json").read_text())
    meta["dataset"] = {"p0": {"images": [f"../nnu/imagesTr/prostate_03_000{c}.nii.gz" for c in (0, 1)],
                              "label": "../nnu/labelsTr/prostate_03.nii.gz"}}
    meta["numTraining"] = 1
    (listed / "dataset.json").write_text(json.dumps(meta))
    one = layouts.read_dataset(listed)
    assert [e[0] for e in one.entries] == ["p0"] and layouts.load_case(one, 0).image.shape == (2,) + SHAPE
    for meta, match in (({"labels": {}}, "neither an MSD"), ({"modality": {}, "channel_names": {}}, "both")):
        d = tmp_path / match.split()[0]
        d.mkdir()
        (d / "dataset.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=match):
            layouts.read_dataset(d)


def test_msd_mri_with_two_tissues_is_multiclass_never_the_liver_task(tmp_path):
    """The reported failure: an MSD MRI folder with grey and white matter was trained as binary CT liver."""
    root = _brain_tissue_msd(tmp_path / "Brain")
    spec, cases = preprocess_dataset(root, None, tmp_path / "cache")
    assert spec.kind == "labels" and spec.class_names == ("grey matter", "white matter") and spec.paper is None
    assert spec.dataset == "Brain" and spec.out_channels == 3 and spec.activation == "softmax"
    raw = [layouts.load_case(layouts.read_dataset(root), i) for i in range(3)]
    plan = preprocess.plan_dataset(raw, ["MRI"])
    assert plan.ct == {} and not plan.nonzero_mask      # no CT window; nothing to crop, so all voxels count
    for c, r in zip(cases, raw):
        assert set(np.unique(c.target)) == {0, 1, 2}
        assert abs(c.image.mean()) < 1e-5 and abs(c.image.std() - 1) < 1e-4     # per-case z-score
        assert c.spacing == pytest.approx(plan.target_spacing)                  # resampled for this kind too
    assert plan.target_spacing == pytest.approx((1.0, 1.0, np.percentile([2.0, 2.5, 3.0], 90)))
    assert cases[0].image.shape[1:] == preprocess.resampled_shape(SHAPE, (1.0, 1.0, 2.0), plan.target_spacing)
    # binary only when asked, under either flag
    b, bcases = preprocess_dataset(root, None, tmp_path / "cache", binary=True)
    assert b.class_names == ("Foreground",) and b.sources == ((1, 2),) and set(np.unique(bcases[0].target)) == {0, 1}
    liver, _ = preprocess_dataset(root, "liver", tmp_path / "cache")
    assert liver.class_names == ("Liver",) and liver.paper == "LiTS"
    with pytest.raises(ValueError, match="needs foreground|edema"):
        preprocess_dataset(root, "tumour", tmp_path / "cache")


def test_cli_task_comes_from_the_data_and_flags_conflict_clearly():
    assert parse_config(["--data", "/some/folder"]).task is None
    assert parse_config([]).task is None and parse_config([]).data == "builtin"
    assert parse_config(["--data", "/x", "--binary"]).binary
    with pytest.raises(ValueError, match="--binary contradicts --task tumour"):
        parse_config(["--data", "/x", "--binary", "--task", "tumour"])
    with pytest.raises(ValueError, match="needs --data"):
        parse_config(["--task", "multiclass"])
    smoke = parse_config(["--preset", "smoke", "--data", "/x"])
    assert smoke.epochs == 2 and smoke.losses == ["dice_ce", "gsl"] and smoke.patch_size == [16, 16, 8]


def test_brats_naming_gives_regions_and_partial_naming_is_ambiguous(tmp_path):
    rng = np.random.default_rng(4)
    image, label = _tissue(rng, 3)
    cases = [("t0", image, label, (1.0, 1.0, 1.0)), ("t1", image, label, (1.0, 1.0, 1.0))]
    brats = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    root = write_msd(tmp_path / "brats", cases, {"0": "FLAIR"}, brats)
    spec, _ = preprocess_dataset(root, None, tmp_path / "cache")
    assert spec.kind == "regions" and spec.class_names == preprocess.REGION_NAMES and spec.paper == "BraTS"
    multi, pre = preprocess_dataset(root, "multiclass", tmp_path / "cache")
    assert multi.kind == "labels" and multi.class_names == ("edema", "non-enhancing tumor", "enhancing tumour")
    assert np.array_equal(pre[0].target, label)
    partial = write_msd(tmp_path / "partial", cases, {"0": "FLAIR"}, {"0": "background", "1": "edema", "2": "necrosis",
                                                                 "3": "cyst"})
    with pytest.raises(ValueError, match="unclear.*--task multiclass"):
        preprocess_dataset(partial, None, tmp_path / "cache")
    assert preprocess_dataset(partial, "multiclass", tmp_path / "cache")[0].out_channels == 4


def test_nnunet_regions_from_regions_class_order(tmp_path):
    root = _regions(tmp_path / "Dataset003_Regions")
    info = layouts.read_dataset(root)
    assert info.regions == [("lesion", (1, 2)), ("core", (2,))] and info.regions_class_order == [1, 2]
    spec, cases = preprocess_dataset(root, None, tmp_path / "cache")
    assert spec.kind == "regions" and spec.class_names == ("lesion", "core") and spec.activation == "sigmoid"
    raw = layouts.load_case(info, 0)
    t = cases[0].target
    assert t.shape == (2,) + raw.label.shape
    np.testing.assert_array_equal(t[0], raw.label > 0)
    np.testing.assert_array_equal(t[1], raw.label == 2)
    with pytest.raises(ValueError, match="cannot use them"):
        preprocess_dataset(root, "multiclass", tmp_path / "cache")
    # BraTS region names in the nnU-Net layout are the paper's BraTS task
    b = _regions(tmp_path / "b", 2, names=("whole tumor", "tumor core"))
    meta = json.loads((b / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole tumor": [1, 2], "tumor core": [2], "enhancing tumor": 2}
    meta["regions_class_order"] = [1, 2, 2]
    (b / "dataset.json").write_text(json.dumps(meta))
    bs, _ = preprocess_dataset(b, None, tmp_path / "cache")
    assert bs.class_names == preprocess.REGION_NAMES and bs.paper == "BraTS"
    assert preprocess_dataset(b, "tumour", tmp_path / "cache")[0] == bs
    with pytest.raises(ValueError, match="--task tumour cannot use them"):
        preprocess_dataset(root, "tumour", tmp_path / "cache")
    del meta["regions_class_order"]
    (b / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no regions_class_order"):
        layouts.read_dataset(b)
    meta["regions_class_order"] = [1, 2]
    (b / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="2 entries for 3 regions"):
        layouts.read_dataset(b)


def test_ignore_label_is_read_and_refused_clearly(tmp_path):
    root = _multiclass_mr(tmp_path / "ign", 2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"]["ignore"] = 3
    (root / "dataset.json").write_text(json.dumps(meta))
    info = layouts.read_dataset(root)
    assert info.ignore_label == 3 and 3 in info.label_values and 3 not in info.labels
    with pytest.raises(ValueError, match="ignore label \\(3\\)"):
        preprocess_dataset(root, None, tmp_path / "cache")


def test_multimodal_ct_and_mr_channels_normalised_each_by_its_modality_sitk_reader(tmp_path):
    """A CT channel gets the dataset-wide foreground window and z-score; an MR channel its per-case z-score; the
    .mha files go through SimpleITK with the same axis order and spacing as NIfTI."""
    rng = np.random.default_rng(5)
    cases = []
    for i in range(3):
        image, label = _tissue(rng, 1)
        ct = (40 + 60 * label + 30 * rng.standard_normal(SHAPE)).astype(np.float32)
        cases.append((f"pet{i}", [ct, 10 * image + i], label, (0.8, 0.9, 2.0)))
    root = write_nnunet(tmp_path / "ctmr", cases, {"0": "CT", "1": "T2"}, {"background": 0, "tumour": 1}, ".mha")
    info = layouts.read_dataset(root)
    raw = [layouts.load_case(info, i) for i in range(3)]
    np.testing.assert_array_equal(raw[1].image[0], cases[1][1][0])
    np.testing.assert_array_equal(raw[1].label, cases[1][2])
    assert raw[1].spacing == pytest.approx((0.8, 0.9, 2.0))
    plan = preprocess.plan_dataset(raw, info.modalities)
    assert list(plan.ct) == [0]
    fg = np.concatenate([r.image[0][r.label > 0] for r in raw])
    lo, hi = np.percentile(fg, [0.5, 99.5])
    assert plan.ct[0].window == pytest.approx((lo, hi))
    spec, pre = preprocess_dataset(root, None, tmp_path / "cache")
    assert spec.in_channels == 2 and spec.class_names == ("tumour",)
    for r, c in zip(raw, pre):
        expect = (np.clip(r.image[0], lo, hi) - plan.ct[0].mean) / plan.ct[0].std
        np.testing.assert_allclose(c.image[0], expect, rtol=1e-5, atol=1e-5)
        assert abs(c.image[1].mean()) < 1e-5 and abs(c.image[1].std() - 1) < 1e-4


def test_nnunet_normalisation_schemes_by_channel_name():
    rng = np.random.default_rng(9)
    image = np.stack([rng.uniform(3, 9, SHAPE), rng.uniform(-2, 5, SHAPE), rng.integers(0, 256, SHAPE),
                      rng.normal(7, 2, SHAPE)]).astype(np.float32)
    raw = [layouts.RawCase("x", image, (image[3] > 8).astype(np.int16), (1.0, 1.0, 1.0))]
    names = ["noNorm", "Rescale_To_0_1", "rgb_to_0_1", "zscore"]
    plan = preprocess.plan_dataset(raw, names)
    assert plan.schemes == ("nonorm", "rescale_to_0_1", "rgb_to_0_1", "zscore") and plan.ct == {}
    assert preprocess.scheme("ADC") == "zscore" and preprocess.scheme("ct") == "ct"
    out = preprocess.normalise(image, plan)
    np.testing.assert_array_equal(out[0], image[0])
    assert out[1].min() == 0 and out[1].max() == pytest.approx(1)
    np.testing.assert_allclose(out[2], image[2] / 255, rtol=1e-6)
    np.testing.assert_allclose(out[3], (image[3] - image[3].mean()) / image[3].std(), rtol=1e-4, atol=1e-5)
    bad = image.copy()
    bad[2, 0, 0, 0] = 300
    with pytest.raises(layouts.DatasetError, match="case x: channel 2 is rgb_to_0_1"):
        preprocess.normalise(bad, plan, "x")


def test_normalisation_equals_nnunetv2_where_installed():
    """The same numbers as nnunetv2's own normalisation classes (checked with nnunetv2 2.8.1)."""
    schemes = pytest.importorskip("nnunetv2.preprocessing.normalization.default_normalization_schemes",
                                  reason="nnunetv2 is not installed (not in the test extra: it brings a large "
                                         "dependency stack)")
    from scipy.ndimage import binary_fill_holes
    rng = np.random.default_rng(10)
    g = np.meshgrid(*[np.linspace(-1, 1, n) for n in (23, 19, 17)], indexing="ij")
    ball = sum(x ** 2 for x in g) < 0.5
    img = np.stack([np.where(ball, rng.uniform(1, 5, ball.shape), 0),
                    np.where(ball, rng.normal(100, 20, ball.shape), 0)]).astype(np.float32)
    lab = (ball & (g[0] > 0)).astype(np.int16)
    plan = preprocess.plan_dataset([layouts.RawCase("a", img, lab, (1.0, 1.0, 1.0))], ["T1", "T2"])
    assert plan.nonzero_mask
    ours = preprocess.normalise(img, plan)
    seg = np.where(binary_fill_holes(np.any(img != 0, 0)), lab, -1)
    for c in range(2):
        theirs = schemes.ZScoreNormalization(use_mask_for_norm=True, intensityproperties={}).run(img[c].copy(), seg)
        np.testing.assert_array_equal(ours[c], theirs)
    ct = rng.normal(50, 80, ball.shape).astype(np.float32)
    stats = preprocess.CTStats((-17.0, 201.0), 60.0, 45.0)
    ours = preprocess.normalise(ct[None], preprocess.Plan((1.0,) * 3, ("ct",), {0: stats}, False))[0]
    props = {"mean": 60.0, "std": 45.0, "percentile_00_5": -17.0, "percentile_99_5": 201.0}
    np.testing.assert_array_equal(ours, schemes.CTNormalization(intensityproperties=props).run(ct.copy()))


def test_nonzero_mask_only_when_the_dataset_is_cropped_to_nonzero():
    rng = np.random.default_rng(6)
    full, label = _tissue(rng, 1)
    cropped = np.zeros_like(full)
    cropped[4:16, 4:16, 3:9] = full[4:16, 4:16, 3:9]          # most of the case is zero, as in BraTS
    for image, expect in ((full, False), (cropped, True)):
        raw = [layouts.RawCase("x", image[None], label * (image != 0), (1.0, 1.0, 1.0))]
        plan = preprocess.plan_dataset(raw, ["T1"])
        assert plan.nonzero_mask is expect
        spec = TaskSpec("labels", "d", ("a",), 1, ((1,),))
        out = preprocess.preprocess_case(raw[0], plan, spec).image[0]
        if expect:
            assert out.shape == (12, 12, 6)                        # cropped to the non-zero box
            assert (out[image[4:16, 4:16, 3:9] == 0] == 0).all()
        v = out[out != 0] if expect else out
        assert abs(v.mean()) < 1e-5 and abs(v.std() - 1) < 1e-4


# -- errors: each names the case and the file ------------------------------------------------------------------------
def _edit(root: Path, fn):
    fn(root)
    return root


def _rewrite(path: Path, arr, spacing=(1.0, 1.0, 2.0)):
    path.unlink()
    write_nifti(path, arr, spacing)


ERRORS = {
    "missing channel file": (lambda r: (r / "imagesTr" / "prostate_01_0001.nii.gz").unlink(),
                             FileNotFoundError, "prostate_01.*missing file.*prostate_01_0001.nii.gz"),
    "label without image": (lambda r: [(r / "imagesTr" / f"prostate_02_000{c}.nii.gz").unlink() for c in (0, 1)],
                            FileNotFoundError, "prostate_02.*has no image"),
    "extra channel": (lambda r: write_nifti(r / "imagesTr" / "prostate_00_0002.nii.gz", np.ones(SHAPE), (1.0, 1.0, 2.0)),
                      ValueError, "prostate_00.*prostate_00_0002.nii.gz is channel 2.*lists 2 channel"),
    "label value not listed": (lambda r: _rewrite(r / "labelsTr" / "prostate_01.nii.gz",
                                                  np.full(SHAPE, 7, np.uint8)),
                               ValueError, "prostate_01.*prostate_01.nii.gz holds values \\[7\\]"),
    "label shape": (lambda r: _rewrite(r / "labelsTr" / "prostate_03.nii.gz", np.ones((20, 20, 11), np.uint8)),
                    ValueError, "prostate_03.*prostate_03.nii.gz has shape \\(20, 20, 11\\)"),
    "label spacing": (lambda r: _rewrite(r / "labelsTr" / "prostate_03.nii.gz", np.ones(SHAPE, np.uint8),
                                         (1.0, 1.0, 3.0)),
                      ValueError, "prostate_03.*prostate_03.nii.gz has spacing"),
    "channel shape": (lambda r: _rewrite(r / "imagesTr" / "prostate_02_0001.nii.gz", np.ones((20, 19, 12))),
                      ValueError, "prostate_02.*prostate_02_0001.nii.gz has shape"),
    "empty label map": (lambda r: _rewrite(r / "labelsTr" / "prostate_00.nii.gz", np.zeros(SHAPE, np.uint8)),
                        ValueError, "prostate_00.*prostate_00.nii.gz is empty"),
    "2-D images": (lambda r: [_rewrite(r / "imagesTr" / f"prostate_01_000{c}.nii.gz", np.ones((20, 20)), (1.0, 1.0))
                              for c in (0, 1)],
                   ValueError, "prostate_01.*prostate_01_0000.nii.gz.*2-D dataset is not supported"),
    "single slice": (lambda r: _rewrite(r / "imagesTr" / "prostate_00_0000.nii.gz", np.ones((20, 20, 1))),
                     ValueError, "prostate_00.*2-D dataset is not supported"),
}


@pytest.mark.parametrize("what", list(ERRORS))
def test_bad_nnunet_cases_stop_with_the_case_and_file_named(tmp_path, what):
    edit, exc, match = ERRORS[what]
    root = _edit(_multimodal(tmp_path / "Dataset005_Prostate"), edit)
    with pytest.raises(exc, match=match):
        preprocess_dataset(root, None, tmp_path / "cache")


def test_the_command_line_prints_a_data_error_without_training(tmp_path, capsys):
    root = _multimodal(tmp_path / "Dataset005_Prostate")
    (root / "labelsTr" / "prostate_02.nii.gz").unlink()
    assert main(["--data", str(root), "--out", str(tmp_path / "run"), *SMOKE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: case prostate_02: missing file") and "prostate_02.nii.gz" in err
    assert not (tmp_path / "run" / "results.csv").exists()


def test_bad_msd_cases_stop_with_the_case_and_file_named(tmp_path):
    root = _brain_tissue_msd(tmp_path / "m")
    (root / "imagesTr" / "b1.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="case b1: missing file .*imagesTr/b1.nii.gz"):
        layouts.read_dataset(root)
    rng = np.random.default_rng(7)
    image, label = _tissue(rng, 2)
    two = write_msd(tmp_path / "mm", [("m0", np.stack([image, image], -1), label, (1.0, 1.0, 1.0))],
               {"0": "T1", "1": "T2", "2": "FLAIR"}, {"0": "background", "1": "a", "2": "b"})
    with pytest.raises(ValueError, match="case m0: .*m0.nii.gz has 2 channel\\(s\\) but dataset.json lists 3"):
        layouts.load_case(layouts.read_dataset(two), 0)
    meta = json.loads((two / "dataset.json").read_text())
    meta["numTraining"] = 5
    (two / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="numTraining is 5 but 1"):
        layouts.read_dataset(two)


def test_preprocessing_never_drops_a_case_and_a_stale_cache_is_redone(tmp_path):
    root = _multiclass_mr(tmp_path / "mc")
    _, cases = preprocess_dataset(root, None, tmp_path / "cache")
    names = [c.name for c in cases]
    assert names == [f"brain_{i:03d}" for i in range(4)]
    (done,) = (tmp_path / "cache").glob("*/done.json")
    done.write_text(json.dumps({"cases": names[:2]}))            # a cache that lost two cases
    _, again = preprocess_dataset(root, None, tmp_path / "cache")
    assert [c.name for c in again] == names


# -- any number of classes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [3, 5])
def test_eq13_class_weights_for_any_number_of_classes(classes):
    from fastgsl.weights import class_weights
    rng = np.random.default_rng(classes)
    spec = TaskSpec("labels", "d", tuple(f"c{k}" for k in range(1, classes)), 1, tuple((k,) for k in range(1, classes)))
    cases = [Case(f"x{i}", np.zeros((1, 7, 6, 5), np.float32), rng.integers(0, classes, (7, 6, 5)).astype(np.uint8),
                  (1.0, 1.0, 1.0)) for i in range(3)]
    counts = voxel_counts(cases, spec)
    expect = np.bincount(np.concatenate([c.target.ravel() for c in cases]), minlength=classes)
    np.testing.assert_array_equal(counts.numpy(), expect)
    w = class_weights(counts).numpy()
    np.testing.assert_allclose(w, (1 / expect) / (1 / expect).sum(), rtol=1e-12)
    regions = TaskSpec("regions", "d", ("a", "b"), 1, ((1, 2), (2,)))
    rc = [Case("r", np.zeros((1, 7, 6, 5), np.float32), preprocess.make_target(c.target, regions), (1.0,) * 3)
          for c in cases]
    np.testing.assert_array_equal(voxel_counts(rc, regions).numpy(), [expect[1:3].sum(), expect[2]])


def test_figure_and_table_for_five_classes(tmp_path):
    names = ("a", "b", "c", "d", "e")
    spec = TaskSpec("labels", "Dataset009_Five", names, 1, tuple((k,) for k in range(1, 6)))
    cols = figures.mask_colours(5)
    assert len(set(cols)) == 5
    rng = np.random.default_rng(8)
    previews, rows = {}, []
    for loss in ("dice_ce", "gsl"):
        for case in ("p", "q", "r"):
            truth = rng.uniform(size=(5, 12, 10)) > 0.7
            previews.setdefault(loss, {})[case] = (rng.standard_normal((12, 10)), truth, ~truth)
            for k, n in enumerate(names):
                rows.append({"loss": loss, "schedule": None, "fold": 0, "case": case, "class": n,
                             "dice": float(rng.uniform()), "hd95": float(k), "asd": 1.0})
    shown = figures.prediction_figure(tmp_path / "p.png", previews, rows, spec)
    assert len(shown) == 3 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    md, vs = report.build_markdown(rows, spec, title="t", notes=[])
    for n in names:
        assert f"| {n} | Dice-CE |" in md
    assert "| Dataset009_Five | a | Dice-CE |" in md and "publishes no numbers" in md
    # 5 classes x 3 claims against the one baseline; 3 cases are too few for a verdict; no published row
    assert len(vs) == 15 and {v["class"] for v in vs} == set(names)
    assert all(v["verdict"] == "inconclusive" and "only 3 case" in v["reason"] and v["paper"] == "-" for v in vs)


# -- end to end: nnU-Net v2 datasets with `python -m fastgsl.train --data DIR --preset smoke` -------------------------
SMOKE = ["--preset", "smoke", "--no-progress", "--device", "cpu"]


def _rows_per_class(out: Path, classes) -> list:
    rows = _csv(out / "results.csv")
    assert {r["class"] for r in rows} == set(classes)
    for loss in ("dice_ce", "gsl"):
        for c in classes:
            assert len([r for r in rows if r["loss"] == loss and r["class"] == c]) == 2   # 2 held-out cases
    assert np.isfinite([[float(r[k]) for k in ("dice", "hd95", "asd")] for r in rows]).all()
    md = (out / "results.md").read_text()
    for c in classes:
        assert f"| {c} | Dice-CE |" in md and "Liver" not in md
    assert (out / "predictions.png").is_file() and (out / "curves.png").is_file()
    return rows


def _first_and_last_conv(out: Path, run: str = "gsl-linear"):
    state = torch.load(out / run / "fold0" / "last.pt", weights_only=False)["model"]
    return state["input_block.conv1.conv.weight"].shape[1], state["output_block.conv.conv.weight"].shape[0]


def test_e2e_multiclass_mr_nnunet_command_line(tmp_path):
    root = _multiclass_mr(tmp_path / "Dataset001_BrainTissue")
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "fastgsl.train", "--data", str(root), "--out", str(out), *SMOKE],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "nnunetv2 layout" in proc.stdout and "3-class task, grey matter, white matter" in proc.stdout
    assert "z-score per case" in proc.stdout and "CT window" not in proc.stdout
    assert "| Dataset001_BrainTissue | grey matter | Dice-CE |" in proc.stdout
    _rows_per_class(out, ("grey matter", "white matter"))
    log = (out / "train.log").read_text()
    weights = log.split("eq. 13 weights [")[1].split("]")[0].split(",")
    assert len(weights) == 3 and abs(sum(float(w) for w in weights) - 1) < 1e-4
    assert _first_and_last_conv(out) == (1, 3)


def test_e2e_multimodal_nnunet(tmp_path):
    root = _multimodal(tmp_path / "Dataset005_Prostate")
    out = tmp_path / "run"
    assert main(["--data", str(root), "--out", str(out), *SMOKE]) == 0
    _rows_per_class(out, ("peripheral zone", "transition zone"))
    assert _first_and_last_conv(out) == (2, 3)       # two input channels, background + 2 classes
    (cache,) = (out / "preprocessed").iterdir()
    img = np.load(cache / "prostate_00.npz")["image"]
    assert img.shape[0] == 2 and np.allclose(img.reshape(2, -1).mean(1), 0, atol=1e-5)


def test_e2e_regions_nnunet(tmp_path):
    root = _regions(tmp_path / "Dataset003_Regions")
    out = tmp_path / "run"
    assert main(["--data", str(root), "--out", str(out), *SMOKE]) == 0
    _rows_per_class(out, ("lesion", "core"))
    assert _first_and_last_conv(out) == (1, 2)       # sigmoid: one output per region, no background
