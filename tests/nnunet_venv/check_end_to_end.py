"""Run inside the nnU-Net environment: ONE end-to-end run of nnU-Net with the fastgsl trainers on a tiny generated
dataset (6 cases of 24 x 48 x 40 voxels, 3 classes, anisotropic spacing), on the CPU:

nnUNetv2_plan_and_preprocess -> nnUNetv2_train with nnUNetTrainerFastGSL cut to 2 epochs of 2 iterations (through
nnUNet_extTrainer; checkpoint, nnU-Net's validation and summary.json) -> nnUNetv2_predict with that trainer ->
fastgsl-nnunet evaluate on nnU-Net's validation folder, whose Dice must equal nnU-Net's summary.json; then the
other trainers through nnU-Net's real loop in this process, and the schedule variants' alpha per epoch."""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(tempfile.mkdtemp(prefix="fastgsl_nnunet_e2e_"))
TEST_TRAINERS = Path(__file__).resolve().parent / "trainers"
# nnunetv2.paths reads these when it is first imported
os.environ.update(nnUNet_raw=str(ROOT / "raw"), nnUNet_preprocessed=str(ROOT / "pre"), nnUNet_results=str(ROOT / "res"),
                  nnUNet_def_n_proc="1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fastgsl.nnunet.install import trainer_folder  # noqa: E402
from fastgsl.nnunet.toy_dataset import write_dataset  # noqa: E402

os.environ["nnUNet_extTrainer"] = os.pathsep.join([str(trainer_folder()), str(TEST_TRAINERS)])
DATASET, NAME, CONFIG = 999, "Dataset999_FastGSLToy", "3d_fullres"
BIN = Path(sys.executable).parent


def run(*cmd, timeout=600):
    r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def trained():
    write_dataset(ROOT / "raw", DATASET, "FastGSLToy", num_cases=6, shape=(24, 48, 40))
    run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET), "-c", CONFIG, "-np", "1")
    os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in the main process (planning itself needs it >= 1)
    out = run("nnUNetv2_train", str(DATASET), CONFIG, "0", "-tr", "nnUNetTrainerFastGSLTiny", "-device", "cpu")
    fold = ROOT / "res" / NAME / f"nnUNetTrainerFastGSLTiny__nnUNetPlans__{CONFIG}" / "fold_0"
    return fold, out


def test_training_through_nnunet_with_fastgsl_loss(trained):
    fold, out = trained
    assert f"Using trainer 'nnUNetTrainerFastGSLTiny' from: {TEST_TRAINERS}" in out
    assert (fold / "checkpoint_final.pth").is_file()
    ck = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ck["trainer_name"] == "nnUNetTrainerFastGSLTiny" and ck["current_epoch"] == 2
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    # alpha updated every epoch (linear schedule, T = 2) and logged in nnU-Net's log
    assert re.findall(r"alpha \(weight of the region term\): ([0-9.]+)", log) == ["1.0", "0.5"]
    # eq. 13 weights from the 4 training cases of fold 0; DTM spacing of each deep-supervision scale from the plans
    plans = json.loads((ROOT / "pre" / NAME / "nnUNetPlans.json").read_text())["configurations"][CONFIG]
    assert "GSL class weights (eq. 13) from 4 training cases" in log
    strides = np.array(plans["architecture"]["arch_kwargs"]["strides"])
    factors = np.cumprod(strides, axis=0)[:-1]  # nnUNetTrainer._get_deep_supervision_scales, inverted
    expected = [tuple(round(float(s) * float(f), 4) for s, f in zip(plans["spacing"], fac)) for fac in factors]
    assert f"spacing per scale {expected}" in log
    losses = [float(line.split()[-1]) for line in log.splitlines() if "train_loss" in line]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"] >= 0


def test_predict_with_the_trainer(trained):
    fold, _ = trained
    inp, outp = ROOT / "predict_in", ROOT / "predict_out"
    inp.mkdir()
    src = ROOT / "raw" / NAME / "imagesTr" / "case_000_0000.nii.gz"
    (inp / src.name).write_bytes(src.read_bytes())
    run("nnUNetv2_predict", "-i", str(inp), "-o", str(outp), "-d", str(DATASET), "-c", CONFIG, "-f", "0",
        "-tr", "nnUNetTrainerFastGSLTiny", "-chk", "checkpoint_final.pth", "-device", "cpu", "--disable_tta",
        "-npp", "1", "-nps", "1")
    import SimpleITK as sitk

    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(outp / "case_000.nii.gz")))
    assert seg.shape == (24, 48, 40) and set(np.unique(seg)) <= {0, 1, 2}


def test_evaluate_equals_nnunets_validation_summary(trained):
    fold, _ = trained
    val = fold / "validation"
    ours = ROOT / "ours_summary.json"
    run("fastgsl-nnunet", "evaluate", str(ROOT / "pre" / NAME / "gt_segmentations"), str(val),
        "-djfile", str(fold.parent / "dataset.json"), "-pfile", str(fold.parent / "plans.json"), "-o", str(ours),
        "--chill", "--no-progress")  # the validation folder holds the validation cases only
    a, b = json.loads((val / "summary.json").read_text()), json.loads(ours.read_text())
    assert [c["prediction_file"] for c in a["metric_per_case"]] == [c["prediction_file"] for c in b["metric_per_case"]]
    for ca, cb in zip(a["metric_per_case"], b["metric_per_case"]):
        for label, m in ca["metrics"].items():
            for k, v in m.items():
                assert cb["metrics"][label][k] == pytest.approx(v, nan_ok=True), (label, k)
            assert {"HD95", "ASD", "NSD", "HD95_paper", "ASD_paper", "NSD_paper"} <= set(cb["metrics"][label])
    assert b["foreground_mean"]["Dice"] == pytest.approx(a["foreground_mean"]["Dice"], nan_ok=True)


def _trainer(name, epochs=None):
    # as nnUNetv2_train builds it (nnunetv2/run/run_training.py), found by name through nnUNet_extTrainer
    from nnunetv2.run.run_training import get_trainer_from_args

    t = get_trainer_from_args(str(DATASET), CONFIG, 0, name, device=torch.device("cpu"))
    if epochs is not None:
        t.num_epochs = epochs
    return t


@pytest.mark.parametrize("name", ["nnUNetTrainerFastDiceCETiny", "nnUNetTrainerFastBLTiny", "nnUNetTrainerFastHLTiny",
                                  "nnUNetTrainerFastHL2Tiny"])
def test_other_trainers_through_nnunets_loop(trained, name):
    t = _trainer(name, epochs=1)
    t.run_training()
    fold = ROOT / "res" / NAME / f"{name}__nnUNetPlans__{CONFIG}" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    losses = t.logger.get_value("train_losses", step=None)
    assert len(losses) == 1 and math.isfinite(losses[0])
    assert (t.loss.scales[0].composite is None) == (name == "nnUNetTrainerFastDiceCETiny")


@pytest.mark.parametrize("name,schedule", [
    ("nnUNetTrainerFastGSLStep5", lambda T: __import__("fastgsl.schedules").schedules.StepSchedule(T, 5)),
    ("nnUNetTrainerFastGSLStep25", lambda T: __import__("fastgsl.schedules").schedules.StepSchedule(T, 25)),
    ("nnUNetTrainerFastGSLCosine", lambda T: __import__("fastgsl.schedules").schedules.CosineSchedule(T)),
    ("nnUNetTrainerFastGSLWarmup", lambda T: __import__("fastgsl.schedules").schedules.LinearSchedule(T, 5)),
    ("nnUNetTrainerFastGSL", lambda T: __import__("fastgsl.schedules").schedules.LinearSchedule(T)),
])
def test_schedule_variants_set_alpha_per_epoch(trained, name, schedule):
    t = _trainer(name, epochs=60)
    t.initialize()
    ref = schedule(60)
    alphas = [t.loss.set_epoch(e) for e in range(60)]
    assert alphas == [ref(e) for e in range(60)]
    assert all(s.alpha == alphas[-1] for s in t.loss.scales)


def test_ignore_label_is_refused_with_a_clear_error(trained):
    from batchgenerators.utilities.file_and_folder_operations import load_json

    from fastgsl.nnunet import variants

    plans = load_json(str(ROOT / "pre" / NAME / "nnUNetPlans.json"))
    plans["continue_training"] = False
    dataset_json = load_json(str(ROOT / "pre" / NAME / "dataset.json"))
    dataset_json["labels"]["ignore"] = 3
    t = variants.nnUNetTrainerFastGSL(plans=plans, configuration=CONFIG, fold=0, dataset_json=dataset_json,
                                      device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"nnUNetTrainerFastGSL: the dataset has an ignore label \(3\)"):
        t.initialize()
