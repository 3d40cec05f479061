"""Run inside the nnU-Net environment: nnU-Net itself finds the fastgsl trainers (nnUNet_extTrainer, or the module
`fastgsl-nnunet install` writes), built-in names come first and never collide, an unknown name gives nnU-Net's own
error, and install + uninstall leave nnunetv2's trainer folder as it was."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nnunetv2
import pytest
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

from fastgsl.nnunet import variants
from fastgsl.nnunet.install import INSTALLED_MODULE, nnunet_trainer_folder, trainer_folder

FIND = ("import sys\nfrom nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
        "c = f(sys.argv[1])\nprint('FOUND', c.__module__, c.__qualname__)\n")


def find_in_subprocess(name, ext=None):
    # bytecode on, as in a user's shell: uninstall must remove the .pyc the search compiles
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_extTrainer", "PYTHONDONTWRITEBYTECODE")}
    if ext is not None:
        env["nnUNet_extTrainer"] = ext
    return subprocess.run([sys.executable, "-c", FIND, name], capture_output=True, text=True, env=env, timeout=300)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def test_path_command_prints_the_folder_with_the_trainers():
    out = subprocess.run([sys.executable, "-m", "fastgsl.nnunet", "path"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == trainer_folder()
    assert sorted(p.name for p in trainer_folder().glob("*.py")) == ["fastgsl_trainers.py"]


def test_names_do_not_collide_with_nnunet_builtins():
    builtin = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
    for name in variants.__all__:
        assert recursive_find_python_class(builtin, name, "nnunetv2.training.nnUNetTrainer") is None, name


def test_nnunet_finds_every_trainer_through_nnUNet_extTrainer(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    for name in variants.__all__:
        cls = recursive_find_trainer_class_by_name(name)
        assert cls is getattr(variants, name)  # the package's class, defined once


def test_unknown_trainer_gives_nnunets_error(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    with pytest.raises(RuntimeError, match="Could not find requested nnunet trainer nnUNetTrainerFastNope"):
        recursive_find_trainer_class_by_name("nnUNetTrainerFastNope")


def test_install_then_uninstall_leaves_the_folder_as_it_was():
    folder = nnunet_trainer_folder()
    assert not (folder / INSTALLED_MODULE).exists(), "a previous run left the installed module behind"
    r = find_in_subprocess("nnUNetTrainerFastGSL")  # without nnUNet_extTrainer: not found; also warms __pycache__
    assert r.returncode != 0 and "Could not find requested nnunet trainer" in r.stderr
    before = snapshot(folder)
    cli = [sys.executable, "-m", "fastgsl.nnunet"]
    out = subprocess.run(cli + ["install"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"wrote: {folder / INSTALLED_MODULE}"
    try:
        r = find_in_subprocess("nnUNetTrainerFastGSL")
        assert r.returncode == 0, r.stderr
        assert "FOUND fastgsl.nnunet.variants nnUNetTrainerFastGSL" in r.stdout
        again = subprocess.run(cli + ["install"], capture_output=True, text=True, check=True).stdout
        assert again.startswith("unchanged:")
    finally:
        out = subprocess.run(cli + ["uninstall"], capture_output=True, text=True, check=True).stdout
    assert f"removed: {folder / INSTALLED_MODULE}" in out.splitlines()
    assert any(line.endswith(".pyc") for line in out.splitlines())  # the bytecode the search compiled, too
    assert snapshot(folder) == before
    out = subprocess.run(cli + ["uninstall"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("nothing to remove")


def test_install_refuses_to_overwrite_a_foreign_module(tmp_path):
    from fastgsl.nnunet.install import install, uninstall

    (tmp_path / INSTALLED_MODULE).write_text("x = 1\n")
    with pytest.raises(RuntimeError, match="not written by fastgsl-nnunet install"):
        install(tmp_path)
    with pytest.raises(RuntimeError, match="not written by fastgsl-nnunet install"):
        uninstall(tmp_path)
    assert (tmp_path / INSTALLED_MODULE).read_text() == "x = 1\n"
