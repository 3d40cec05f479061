"""Where the trainers are, and the re-export module for an nnunetv2 without ``nnUNet_extTrainer``.

``trainer_folder()`` is the folder to list in ``nnUNet_extTrainer``.  ``install()`` writes
``INSTALLED_MODULE`` into nnunetv2's own trainer folder (``nnunetv2/training/nnUNetTrainer``, searched first by
every nnunetv2 2.x); ``uninstall()`` removes it and the bytecode Python compiled from it, and nothing else.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

#: the module ``install`` writes into nnunetv2's trainer folder
INSTALLED_MODULE = "fastgsl_trainers.py"
#: its whole content; ``uninstall`` removes only a file with exactly this content
INSTALLED_SOURCE = ("from fastgsl.nnunet.variants import *  # noqa: F401,F403  "
                    "(written by `fastgsl-nnunet install`; `fastgsl-nnunet uninstall` removes it)\n")


def trainer_folder() -> Path:
    """The plain folder of trainer modules to list in ``nnUNet_extTrainer``."""
    return Path(__file__).resolve().parent / "trainers"


def nnunet_trainer_folder() -> Path:
    """nnunetv2's built-in trainer folder, located without importing nnunetv2 (nor torch)."""
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nnunetv2 is not installed in this environment: pip install \"fastgsl[nnunet]\"")
    folder = Path(list(spec.submodule_search_locations)[0]) / "training" / "nnUNetTrainer"
    if not folder.is_dir():
        raise RuntimeError(f"nnunetv2 has no trainer folder at {folder}; is this nnunetv2 2.x?")
    return folder


def _bytecode(path: Path) -> list[Path]:
    cache = path.parent / "__pycache__"
    return sorted(cache.glob(f"{path.stem}.*.pyc")) if cache.is_dir() else []


def install(folder: Path | None = None) -> list[str]:
    """Write the re-export module; returns the lines saying what was touched (nothing if already there)."""
    target = (folder or nnunet_trainer_folder()) / INSTALLED_MODULE
    if target.exists():
        if target.read_text() == INSTALLED_SOURCE:
            return [f"unchanged: {target} (already installed)"]
        raise RuntimeError(f"{target} exists and was not written by fastgsl-nnunet install; not touching it")
    target.write_text(INSTALLED_SOURCE)
    return [f"wrote: {target}"]


def uninstall(folder: Path | None = None) -> list[str]:
    """Remove the re-export module and its compiled bytecode; returns the lines saying what was removed."""
    target = (folder or nnunet_trainer_folder()) / INSTALLED_MODULE
    if not target.exists():
        return [f"nothing to remove: {target} does not exist"]
    if target.read_text() != INSTALLED_SOURCE:
        raise RuntimeError(f"{target} was not written by fastgsl-nnunet install; not removing it")
    done = []
    for pyc in _bytecode(target):
        pyc.unlink()
        done.append(f"removed: {pyc}")
    target.unlink()
    return [f"removed: {target}"] + done
