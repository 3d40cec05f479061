"""nnU-Net v2 with fastgsl: seconds per training iteration, and seconds to evaluate a folder, all peers in one run.

Run in the nnU-Net environment (``.ci/nnunet-venv``; README, "With nnU-Net")::

    .venv-nnunet/bin/python -m pytest benchmarks/benchmark_nnunet.py --benchmark-columns=min,median,rounds
    .venv-nnunet/bin/python -m benchmarks.benchmark_nnunet      # markdown tables with the ratios

Training: the generated toy dataset (``fastgsl.nnunet.toy_dataset``, ``FASTGSL_BENCH_NNUNET_SHAPE`` voxels per
case, default 32x80x64), planned by ``nnUNetv2_plan_and_preprocess -c 3d_fullres`` in a temporary folder; one
batch from nnU-Net's training loader, then ``trainer.train_step(batch)`` (forward, loss with deep supervision,
backward, optimiser step) on the same batch, per trainer:

* ``nnunet``: ``nnUNetTrainer``, nnU-Net's default ``DC_and_CE_loss``;
* ``fast_dice_ce``: ``nnUNetTrainerFastDiceCE``, the same loss value from fastgsl's fused pass;
* ``fast_gsl``: ``nnUNetTrainerFastGSL``, Dice-CE + GSL with the DTM of every scale computed on the fly;
* ``workaround_sitk``: what users do today: nnU-Net's loss plus a GSL whose DTMs come from SimpleITK's
  ``SignedMaurerDistanceMap`` per sample, class and scale every step, on the CPU (``SitkGSLTrainer`` below).

The loss alone (forward + backward on the network's outputs of that batch) is timed too, to show its share.
Evaluation: ``FASTGSL_BENCH_NNUNET_CASES`` (default 8) reference / prediction pairs of 64x160x160 voxels, 2 labels:

* ``fastgsl``: ``fastgsl-nnunet evaluate`` (``evaluate_folder``), nnU-Net's metrics + HD95/ASD/NSD in both
  conventions; ``fastgsl_monai``: the same with ``conventions=("monai",)``;
* ``nnunet``: ``nnUNetv2_evaluate_folder`` (``compute_metrics_on_folder2``, Dice and counts only, 2 processes);
* ``monai_hd95``: MONAI ``compute_hausdorff_distance(percentile=95)`` per case over the same files (read with
  SimpleITK), HD95 only.

``FASTGSL_BENCH_ROUNDS`` (default 5) sets the rounds.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = int(os.environ.get("FASTGSL_BENCH_ROUNDS", "5"))
SHAPE = tuple(int(v) for v in os.environ.get("FASTGSL_BENCH_NNUNET_SHAPE", "32x80x64").split("x"))
N_CASES = int(os.environ.get("FASTGSL_BENCH_NNUNET_CASES", "8"))
EVAL_SHAPE = (64, 160, 160)
ROOT = Path(tempfile.mkdtemp(prefix="fastgsl_bench_nnunet_"))
os.environ.update(nnUNet_raw=str(ROOT / "raw"), nnUNet_preprocessed=str(ROOT / "pre"),
                  nnUNet_results=str(ROOT / "res"), nnUNet_def_n_proc="2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

TRAINERS = ("nnunet", "fast_dice_ce", "fast_gsl", "workaround_sitk")
EVALUATORS = ("fastgsl", "fastgsl_monai", "nnunet", "monai_hd95")
DATASET, NAME, CONFIG = 998, "Dataset998_FastGSLBench", "3d_fullres"


# -- training ----------------------------------------------------------------------------------------------------

def _sitk_dtm(mask: np.ndarray, spacing) -> np.ndarray:
    import SimpleITK as sitk

    if not mask.any() or mask.all():
        diag = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(mask.shape, spacing))))
        return np.full(mask.shape, diag if not mask.any() else -diag, np.float32)
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False,
                                                               useImageSpacing=True))


class _SitkGSLLoss(torch.nn.Module):
    """nnU-Net's deep-supervised Dice-CE, plus ``sum_s w_s GSL_s`` with SimpleITK DTMs per step (the workaround)."""

    def __init__(self, region, weights, spacings, num_classes, alpha=0.5):
        super().__init__()
        self.region, self.weights, self.spacings, self.C, self.alpha = region, weights, spacings, num_classes, alpha

    def forward(self, outputs, targets):
        total = self.alpha * self.region(outputs, targets)
        for w, o, t, sp in zip(self.weights, outputs, targets, self.spacings):
            if w == 0:
                continue
            lab = t[:, 0].long().cpu().numpy()
            d = torch.from_numpy(np.stack([[_sitk_dtm(lab[b] == c, sp) for c in range(self.C)]
                                           for b in range(lab.shape[0])])).to(o.device)
            p = torch.softmax(o.float(), 1)
            onehot = torch.nn.functional.one_hot(t[:, 0].long(), self.C).movedim(-1, 1).float()
            gsl = 1 - ((d * (1 - onehot - p)) ** 2).flatten(1).sum(1) / ((d ** 2).flatten(1).sum(1) + 1e-6)
            total = total + (1 - self.alpha) * w * gsl.mean()
        return total


@functools.lru_cache(maxsize=None)
def _planned() -> bool:
    from fastgsl.nnunet.toy_dataset import write_dataset

    write_dataset(ROOT / "raw", DATASET, "FastGSLBench", num_cases=6, shape=SHAPE)  # 5 folds need >= 5
    subprocess.run([str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET), "-c",
                    CONFIG, "-np", "1"], check=True, capture_output=True)
    os.environ["nnUNet_n_proc_DA"] = "0"
    return True


def _trainer_class(peer: str):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from fastgsl.nnunet import variants

    if peer == "nnunet":
        return nnUNetTrainer
    if peer == "fast_dice_ce":
        return variants.nnUNetTrainerFastDiceCE
    if peer == "fast_gsl":
        return variants.nnUNetTrainerFastGSL

    class SitkGSLTrainer(nnUNetTrainer):
        def _build_loss(self):
            base = super()._build_loss()
            scales = self._get_deep_supervision_scales()
            sp = self.configuration_manager.spacing
            return _SitkGSLLoss(base, base.weight_factors, [[a / f for a, f in zip(sp, s)] for s in scales],
                                self.label_manager.num_segmentation_heads)

    return SitkGSLTrainer


@functools.lru_cache(maxsize=None)
def _setup(peer: str):
    """(trainer, batch) with the trainer initialised, the batch one draw of nnU-Net's training loader."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    _planned()
    plans = load_json(str(ROOT / "pre" / NAME / "nnUNetPlans.json"))
    plans["continue_training"] = False
    dataset_json = load_json(str(ROOT / "pre" / NAME / "dataset.json"))
    torch.manual_seed(0)
    t = _trainer_class(peer)(plans=plans, configuration=CONFIG, fold=0, dataset_json=dataset_json,
                             device=torch.device("cpu"))
    t.initialize()
    if hasattr(t.loss, "set_epoch"):
        t.loss.set_epoch(0)
        for s in t.loss.scales:  # alpha = 0.5, as the workaround
            if s.composite is not None:
                s.composite.alpha = 0.5
    batch = _batch()
    return t, batch


@functools.lru_cache(maxsize=None)
def _batch():
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    plans = load_json(str(ROOT / "pre" / NAME / "nnUNetPlans.json"))
    plans["continue_training"] = False
    t = nnUNetTrainer(plans=plans, configuration=CONFIG, fold=0,
                      dataset_json=load_json(str(ROOT / "pre" / NAME / "dataset.json")), device=torch.device("cpu"))
    t.initialize()
    loader, _ = t.get_dataloaders()
    return next(loader)


def train_step(peer: str) -> None:
    t, batch = _setup(peer)
    t.train_step(batch)


def loss_step(peer: str) -> None:
    t, batch = _setup(peer)
    if not hasattr(t, "_bench_outputs"):
        with torch.no_grad():
            t._bench_outputs = [o.detach() for o in t.network(batch["data"])]
    outs = [o.clone().requires_grad_() for o in t._bench_outputs]
    t.loss(outs, batch["target"]).backward()


# -- evaluation --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _eval_folder() -> Path:
    import json

    import SimpleITK as sitk

    from fastgsl.nnunet.toy_dataset import SPACING, make_case

    folder = ROOT / "eval"
    (folder / "gt").mkdir(parents=True)
    (folder / "pred").mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_CASES):
        _, ref = make_case(EVAL_SHAPE, rng)
        pred = np.roll(ref, shift=(1, 2, -2), axis=(0, 1, 2))
        pred[rng.random(EVAL_SHAPE) < 2e-4] = 2
        for arr, sub in ((ref, "gt"), (pred, "pred")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing(SPACING[::-1])
            sitk.WriteImage(img, str(folder / sub / f"case{i:03d}.nii.gz"))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MR"}, "file_ending": ".nii.gz",
                                                     "labels": {"background": 0, "organ": 1, "lesion": 2},
                                                     "numTraining": N_CASES}))
    (folder / "plans.json").write_text(json.dumps({"label_manager": "LabelManager"}))
    return folder


def evaluate(peer: str) -> None:
    f = _eval_folder()
    args = (str(f / "gt"), str(f / "pred"), str(f / "dataset.json"), str(f / "plans.json"))
    if peer in ("fastgsl", "fastgsl_monai"):
        from fastgsl.nnunet.evaluate import evaluate_folder

        evaluate_folder(*args, output_file=str(f / f"{peer}.json"), num_processes=2, chill=False,
                        conventions=("monai", "paper") if peer == "fastgsl" else ("monai",), progress=False)
    elif peer == "nnunet":
        from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2

        compute_metrics_on_folder2(*args, output_file=str(f / "nnunet.json"), num_processes=2)
    else:
        import SimpleITK as sitk
        from monai.metrics import compute_hausdorff_distance

        from fastgsl.nnunet.toy_dataset import SPACING

        for name in sorted(os.listdir(f / "pred")):
            ref = sitk.GetArrayFromImage(sitk.ReadImage(str(f / "gt" / name)))
            pred = sitk.GetArrayFromImage(sitk.ReadImage(str(f / "pred" / name)))
            oh = lambda a: torch.from_numpy(np.stack([a == 1, a == 2]))[None]  # noqa: E731
            compute_hausdorff_distance(oh(pred), oh(ref), include_background=True, percentile=95,
                                       spacing=list(SPACING))


# -- pytest-benchmark ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer", TRAINERS)
def test_train_step(benchmark, peer):
    train_step(peer)  # warm-up (and set-up) outside the timing
    benchmark.pedantic(train_step, args=(peer,), rounds=ROUNDS, iterations=1)


@pytest.mark.parametrize("peer", TRAINERS)
def test_loss_step(benchmark, peer):
    loss_step(peer)
    benchmark.pedantic(loss_step, args=(peer,), rounds=ROUNDS, iterations=1)


@pytest.mark.parametrize("peer", EVALUATORS)
def test_evaluate(benchmark, peer):
    _eval_folder()
    benchmark.pedantic(evaluate, args=(peer,), rounds=max(1, ROUNDS // 2), iterations=1)


# -- main ---------------------------------------------------------------------------------------------------------

def _times(fn, peers, rounds):
    """``{peer: (min, median)}`` seconds; the peers take turns in every round, so that load on a shared machine
    falls on all of them alike."""
    for p in peers:
        fn(p)  # set-up and warm-up
    out = {p: [] for p in peers}
    for _ in range(rounds):
        for p in peers:
            t0 = time.perf_counter()
            fn(p)
            out[p].append(time.perf_counter() - t0)
    return {p: (min(v), float(np.median(v))) for p, v in out.items()}


def main():
    torch.set_num_threads(torch.get_num_threads())
    steps, losses = _times(train_step, TRAINERS, ROUNDS), _times(loss_step, TRAINERS, ROUNDS)
    rows = {p: (steps[p], losses[p]) for p in TRAINERS}
    t, batch = _setup("fast_gsl")
    print(f"nnU-Net training step, toy dataset {'x'.join(map(str, SHAPE))}, patch "
          f"{'x'.join(map(str, t.configuration_manager.patch_size))}, batch {batch['data'].shape[0]}, "
          f"{len(t.loss.scales)} deep-supervision outputs, CPU, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {ROUNDS} rounds")
    print("| trainer | step min (s) | step median (s) | step vs nnU-Net | loss fwd+bwd median (s) | loss vs nnU-Net |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base_step, base_loss = rows["nnunet"][0][1], rows["nnunet"][1][1]
    for p, ((smin, smed), (_, lmed)) in rows.items():
        print(f"| {p} | {smin:.3f} | {smed:.3f} | {smed / base_step:.2f}x | {lmed:.4f} | {lmed / base_loss:.2f}x |")
    ev = _times(evaluate, EVALUATORS, max(1, ROUNDS // 2))
    print(f"\nEvaluate a folder of {N_CASES} cases of {'x'.join(map(str, EVAL_SHAPE))} voxels, 2 labels, CPU")
    print("| evaluator | metrics | min (s) | median (s) | vs nnUNetv2_evaluate_folder | vs MONAI HD95 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    what = {"fastgsl": "nnU-Net's + HD95/ASD/NSD, MONAI and paper conventions",
            "fastgsl_monai": "nnU-Net's + HD95/ASD/NSD, MONAI convention", "nnunet": "Dice, IoU, counts",
            "monai_hd95": "HD95 only"}
    for p, (tmin, tmed) in ev.items():
        print(f"| {p} | {what[p]} | {tmin:.2f} | {tmed:.2f} | {tmed / ev['nnunet'][1]:.2f}x | "
              f"{tmed / ev['monai_hd95'][1]:.2f}x |")


if __name__ == "__main__":
    main()
