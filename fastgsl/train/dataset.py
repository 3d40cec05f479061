"""From a data argument to preprocessed cases and cross-validation folds.

``--data builtin`` (default) generates the task's MSD folder under the data directory on first use
(``fastgsl.train.synthetic``); any other value is an MSD or nnU-Net v2 raw folder (``fastgsl.train.layouts``).
Preprocessed cases are cached as ``.npz`` under ``cache_dir`` (keyed by the source folder, its dataset.json and
the task, so a second run, or the other ranks of a DDP job, reuse them).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from fastgsl.train import layouts, preprocess, synthetic

log = logging.getLogger("fastgsl.train")


def resolve_data(data: str, task: str | None, data_dir, num_cases: int, seed: int = 0) -> Path:
    """The dataset folder to read: generated on first use for ``data == "builtin"`` (task ``liver`` unless
    ``tumour`` is asked for)."""
    if data == "builtin":
        task = task or "liver"
        if task not in synthetic.TASKS:
            raise ValueError(f"--task must be one of {synthetic.TASKS} for the built-in data, got {task!r}")
        folder = synthetic.ensure_dataset(data_dir, task, num_cases, seed)
        return folder
    folder = Path(data).expanduser()
    if not (folder / "dataset.json").is_file():
        raise FileNotFoundError(f"--data {data}: no dataset.json there (expected an MSD or nnU-Net v2 raw folder: "
                                "dataset.json, imagesTr/, labelsTr/)")
    return folder


PREPROCESS_VERSION = 2   # bump when preprocessing changes, so old caches are not reused


def _cache_key(folder: Path, spec) -> str:
    meta = (folder / "dataset.json").read_bytes()
    fingerprint = repr((PREPROCESS_VERSION, spec.kind, spec.class_names, spec.sources)).encode()
    return hashlib.sha1(str(folder.resolve()).encode() + meta + fingerprint).hexdigest()[:12]


def preprocess_dataset(folder: Path, task: str | None, cache_dir, binary: bool = False) -> tuple:
    """``(TaskSpec, [Case])`` for every training case of a dataset folder (``fastgsl.train.preprocess``).

    ``task`` and ``binary`` are ``--task`` and ``--binary``; the builtin data passes its task.  Every case
    ``dataset.json`` lists comes back, in its order, or an error names the one that failed.
    """
    info = layouts.read_dataset(folder)
    if task is None and info.generated:
        task = "liver" if info.is_ct else "tumour"
    spec = preprocess.task_spec(info, task, binary)
    cache = Path(cache_dir) / f"{info.name}-{_cache_key(folder, spec)}"
    done = cache / "done.json"
    names = [e[0] for e in info.entries]
    if done.exists() and json.loads(done.read_text())["cases"] == names:
        cases = []
        for name in names:
            z = np.load(cache / f"{name}.npz")
            cases.append(preprocess.Case(name, z["image"], z["target"], tuple(z["spacing"].tolist())))
        return spec, cases
    log.info("preprocessing %d cases of %s (%s layout, %s: %s task, %s)", len(names), folder, info.layout,
             spec.dataset, "regions" if spec.kind == "regions" else f"{spec.out_channels}-class",
             ", ".join(spec.class_names))
    raw = [layouts.load_case(info, i) for i in range(len(names))]
    plan = preprocess.plan_dataset(raw, info.modalities)
    log.info("plan: target spacing %s mm; %s", tuple(round(s, 3) for s in plan.target_spacing),
             "; ".join(f"channel {k} ({m}): " + _describe(plan, k) for k, m in enumerate(info.modalities)))
    cases = [preprocess.preprocess_case(r, plan, spec) for r in raw]
    cache.mkdir(parents=True, exist_ok=True)
    for c in cases:
        np.savez(cache / f"{c.name}.npz", image=c.image, target=c.target, spacing=np.asarray(c.spacing))
    done.write_text(json.dumps({"cases": names, "source": str(folder)}))
    return spec, cases


def _describe(plan, k: int) -> str:
    how = plan.schemes[k]
    if how == "ct":
        s = plan.ct[k]
        return "CT window [{:.1f}, {:.1f}], foreground mean {:.1f} std {:.1f}".format(*s.window, s.mean, s.std)
    if how == "zscore":
        return "z-score per case" + (" over the non-zero region" if plan.nonzero_mask else "")
    return how


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
