"""The built-in task's calibration tools: the component attribution of the evaluation, the design variants of
the liver generator and the summary against the baseline's targets."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage

from fastgsl.train import calibration, synthetic
from fastgsl.train.evaluate import unmatched_components


def _ball(shape, centre, r):
    g = np.indices(shape)
    return sum((x - c) ** 2 for x, c in zip(g, centre)) <= r * r


def _counts(pred, truth):
    u = unmatched_components(pred, truth)
    return u["missed"], u["spurious"]


def test_unmatched_components_counts_missed_and_spurious():
    shape = (21, 19, 17)
    truth = _ball(shape, (6, 6, 6), 4) | _ball(shape, (16, 14, 12), 2)       # an organ and a satellite
    pred = _ball(shape, (6, 7, 6), 4) | _ball(shape, (3, 16, 14), 1)          # the satellite missed, one spurious
    assert _counts(pred, truth) == (1, 1)
    u = unmatched_components(pred, truth)
    satellite, speck = _ball(shape, (16, 14, 12), 2), _ball(shape, (3, 16, 14), 1)
    assert u["missed_fraction"] == satellite.sum() / truth.sum() and u["spurious_fraction"] == speck.sum() / pred.sum()
    assert _counts(truth, truth) == (0, 0)
    assert _counts(np.zeros(shape, bool), truth) == (2, 0)
    assert _counts(truth, np.zeros(shape, bool)) == (0, 2)
    assert _counts(np.zeros(shape, bool), np.zeros(shape, bool)) == (0, 0)
    assert unmatched_components(np.zeros(shape, bool), truth)["missed_fraction"] == 1.0
    # 26-connectivity: two voxels touching at a corner are one component
    corner = np.zeros(shape, bool)
    corner[0, 0, 0] = corner[1, 1, 1] = True
    assert _counts(corner, np.zeros(shape, bool)) == (0, 1)
    # an object on the border, and a 2-D mask
    border = np.zeros((9, 7), bool)
    border[0, :3] = True
    assert _counts(border, np.zeros((9, 7), bool)) == (0, 1)


def test_design_variants_parse_and_change_the_generated_case():
    d = calibration.design_from(["neighbour_hu=86,98", "distractor_radii=6,10;6,10;9,15", "satellites=2,4"])
    assert d.neighbour_hu == (86, 98) and d.distractor_radii == ((6, 10), (6, 10), (9, 15))
    assert d.satellites == (2, 4) and isinstance(d.satellites[0], int)
    assert calibration.parse_value("3.5") == 3.5 and calibration.parse_value("-2") == -2
    with pytest.raises(SystemExit, match="no_such_field"):
        calibration.design_from(["no_such_field=1"])
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        calibration.design_from(["neighbour_hu"])
    # a case is a pure function of (task, seed, index) and the design; the design is read at generation time
    base = synthetic.generate_case("liver", 0, 1)
    again = synthetic.generate_case("liver", 0, 1)
    assert all(np.array_equal(a, b) for a, b in zip(base[:2], again[:2])) and base[2] == again[2]
    bigger = dataclasses.replace(synthetic.LiverDesign(), satellites=(3, 3), satellite_radius=(7.0, 7.0))
    old = synthetic.LIVER_DESIGN
    try:
        synthetic.LIVER_DESIGN = bigger
        img, label, spacing = synthetic.generate_case("liver", 0, 1)
    finally:
        synthetic.LIVER_DESIGN = old
    _, n = ndimage.label(label, structure=np.ones((3, 3, 3), bool))
    _, n_base = ndimage.label(base[1], structure=np.ones((3, 3, 3), bool))
    assert spacing == base[2] and label.sum() > base[1].sum() and n >= 2 and n_base >= 1


def test_summary_checks_the_three_targets():
    rows = [{"dice": 0.93, "hd95": h, "missed": m, "spurious": s, "missed_fraction": mf, "spurious_fraction": sf}
            for h, m, s, mf, sf in [(1.7, 0, 0, 0, 0)] * 9 + [(30.0, 1, 0, 0.08, 0), (25.0, 0, 2, 0, 0.01),
                                                              (1.7, 0, 0, 0, 0)]]
    s = calibration.summarize(rows, (1.7, 1.7, 4.7))
    hd = np.array([r["hd95"] for r in rows])
    assert math.isclose(s["hd95_mm"], hd.mean()) and math.isclose(s["hd95_voxels"], hd.mean() / 1.7)
    assert math.isclose(s["std_over_mean"], hd.std() / hd.mean())
    assert s["missed"] == 1 and s["spurious"] == 2
    assert s["cases_hd95_over_3_voxels"] == 2 and s["of_which_unmatched_over_5pct"] == 1
    assert s["targets_met"] == {"dice": True, "hd95_voxels": True, "std_over_mean": True}
    flat = calibration.summarize([dict(r, hd95=1.7) for r in rows], (1.7, 1.7, 4.7))
    assert flat["targets_met"] == {"dice": True, "hd95_voxels": False, "std_over_mean": False}
    low = calibration.summarize([dict(r, dice=0.85) for r in rows], (1.7, 1.7, 4.7))
    assert not low["targets_met"]["dice"]


def test_calibration_run_trains_dice_ce_on_the_variant_and_writes_its_summary(tmp_path, monkeypatch):
    """The command end to end, at a tiny budget: the variant's data are generated with the changed design, only
    Dice-CE trains, and the summary is written."""
    import functools
    import json

    from fastgsl.train.config import TrainConfig
    tiny = functools.partial(TrainConfig, num_cases=4, epochs=1, iters_per_epoch=1, patch_size=[16, 16, 8],
                             filters=4, max_filters=16, val_every=1, sw_batch_size=64, device="cpu")
    monkeypatch.setattr(calibration, "TrainConfig", tiny)
    out = calibration.main(["--name", "big-satellites", "--out", str(tmp_path), "--set", "satellites=3,3",
                            "--set", "satellite_radius=7,7"])
    assert synthetic.LIVER_DESIGN == synthetic.LiverDesign()     # the variant does not leak out of the run
    saved = json.loads((tmp_path / "big-satellites" / "calibration.json").read_text())
    assert saved["design"]["satellites"] == [3, 3] and saved["cases"] == 2 and len(saved["per_case"]) == 2
    assert out["name"] == "big-satellites" and set(out["targets_met"]) == {"dice", "hd95_voxels", "std_over_mean"}
    runs = {p.name for p in (tmp_path / "big-satellites").iterdir() if p.is_dir()} - {"data", "preprocessed"}
    assert runs == {"dice_ce"}
    import nibabel as nib
    label = nib.load(str(next((tmp_path / "big-satellites" / "data").glob("*/labelsTr/liver_000.nii.gz"))))
    _, n = ndimage.label(np.asarray(label.dataobj) > 0, structure=np.ones((3, 3, 3), bool))
    assert n >= 3   # the organ and satellites of radius 7 mm: the variant's data, not the default's
