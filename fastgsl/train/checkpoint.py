"""Checkpoints of one (loss, fold) run: written atomically after every epoch, read back by ``--resume``.

``last.pt`` holds the model, optimizer and GradScaler states, the next epoch and the history so far; a run
that has finished also has ``result.json`` (its evaluation rows and history), and ``--resume`` then reuses it
without training.  Patches depend only on ``(seed, epoch, step, batch position)``, so a resumed run sees the
same data as an uninterrupted one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save(run_dir: Path, *, model, optimizer, scaler, next_epoch: int, history: list, meta: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "next_epoch": next_epoch, "history": history, "meta": meta}
    _atomic_write(run_dir / "last.pt", lambda p: torch.save(state, p))


def load(run_dir: Path, *, model, optimizer, scaler, meta: dict, map_location) -> tuple:
    """``(next_epoch, history)`` restored from ``run_dir/last.pt``, or ``(0, [])`` when there is none.

    A checkpoint written for a different configuration (``meta``: loss, schedule, fold, seed, epochs, patch
    size ...) is an error rather than a silent mix of two runs.
    """
    path = run_dir / "last.pt"
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location=map_location, weights_only=False)
    if state["meta"] != meta:
        diff = {k: (state["meta"].get(k), v) for k, v in meta.items() if state["meta"].get(k) != v}
        raise ValueError(f"{path} was written by a different configuration (saved, now): {diff}; "
                         "use a new --out folder or drop --resume")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    return int(state["next_epoch"]), list(state["history"])


def save_result(run_dir: Path, result: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(run_dir / "result.json", lambda p: p.write_text(json.dumps(result)))


def load_result(run_dir: Path, meta: dict):
    path = run_dir / "result.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("meta") == json.loads(json.dumps(meta)) else None
