"""From a data argument to preprocessed cases and cross-validation folds.

``--data builtin`` (default) generates the task's MSD folder under the data directory on first use
(``fastgsl.train.synthetic``); any other value is an MSD folder.  Preprocessed cases are cached as ``.npz``
under ``cache_dir`` (keyed by the source folder, so a second run, or the other ranks of a DDP job, reuse them).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from fastgsl.train import msd, preprocess, synthetic

log = logging.getLogger("fastgsl.train")


def resolve_data(data: str, task: str, data_dir, num_cases: int, seed: int = 0) -> Path:
    """The MSD folder to read: generated on first use for ``data == "builtin"``."""
    if data == "builtin":
        if task not in synthetic.TASKS:
            raise ValueError(f"--task must be one of {synthetic.TASKS} for the built-in data, got {task!r}")
        folder = synthetic.ensure_dataset(data_dir, task, num_cases, seed)
        return folder
    folder = Path(data).expanduser()
    if not (folder / "dataset.json").is_file():
        raise FileNotFoundError(f"--data {data}: no dataset.json there (expected an MSD folder: dataset.json, "
                                "imagesTr/, labelsTr/)")
    return folder


def _cache_key(folder: Path, task: str) -> str:
    meta = (folder / "dataset.json").read_bytes()
    return hashlib.sha1(str(folder.resolve()).encode() + meta + task.encode()).hexdigest()[:12]


def preprocess_dataset(folder: Path, task: str | None, cache_dir) -> tuple:
    """``(TaskSpec, [Case])`` for every training case of an MSD folder, preprocessed as in the paper."""
    info = msd.read_dataset_json(folder)
    spec = preprocess.task_spec(info, task)
    cache = Path(cache_dir) / f"{info.name}-{_cache_key(folder, spec.kind)}"
    done = cache / "done.json"
    if done.exists():
        names = json.loads(done.read_text())["cases"]
        cases = []
        for name in names:
            z = np.load(cache / f"{name}.npz")
            cases.append(preprocess.Case(name, z["image"], z["target"], tuple(z["spacing"].tolist())))
        return spec, cases
    log.info("preprocessing %d cases of %s (%s task)", len(info.entries), folder, spec.dataset)
    raw = [msd.load_case(info, i) for i in range(len(info.entries))]
    if spec.kind == "labels":
        plan = preprocess.plan_ct(raw)
        log.info("CT plan: target spacing %s mm, window [%.1f, %.1f], foreground mean %.1f std %.1f",
                 tuple(round(s, 3) for s in plan.target_spacing), *plan.window, plan.mean, plan.std)
        cases = [preprocess.preprocess_ct(r, plan) for r in raw]
    else:
        cases = [preprocess.preprocess_mr(r, info.labels) for r in raw]
    cache.mkdir(parents=True, exist_ok=True)
    for c in cases:
        np.savez(cache / f"{c.name}.npz", image=c.image, target=c.target, spacing=np.asarray(c.spacing))
    done.write_text(json.dumps({"cases": [c.name for c in cases], "source": str(folder)}))
    return spec, cases


def make_folds(num_cases: int, folds: int, seed: int) -> list:
    """``folds`` disjoint test splits covering all cases (shuffled with ``seed``): ``[(train_idx, test_idx)]``."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2 (k-fold cross-validation), got {folds}")
    if folds > num_cases:
        raise ValueError(f"--folds {folds} is more than the {num_cases} cases")
    order = np.random.default_rng(seed).permutation(num_cases)
    splits = np.array_split(order, folds)
    return [(sorted(np.concatenate([s for j, s in enumerate(splits) if j != k]).tolist()), sorted(splits[k].tolist()))
            for k in range(folds)]
