"""fastgsl.monai against the installed MONAI itself: values, gradients, shapes, warnings, errors, fallbacks."""
from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

monai = pytest.importorskip("monai")
if not monai.__version__.startswith("1.6."):
    pytest.skip(f"fastgsl.monai reproduces MONAI 1.6; MONAI {monai.__version__} is installed", allow_module_level=True)
import monai.losses as ML  # noqa: E402
import monai.metrics as MM  # noqa: E402

import fastgsl.monai.losses as FL  # noqa: E402
import fastgsl.monai.metrics as FM  # noqa: E402
from fastgsl import observe  # noqa: E402
from fastgsl.monai import _fallback  # noqa: E402
from fastgsl.monai._fallback import FallbackWarning  # noqa: E402

# MONAI's empty-mask warnings are compared explicitly where it matters (_run); elsewhere they are noise
pytestmark = [pytest.mark.filterwarnings("ignore:the (ground truth|prediction) of class"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

LOSSES = ["DiceLoss", "DiceCELoss", "GeneralizedDiceLoss", "HausdorffDTLoss", "LogHausdorffDTLoss"]
METRIC_CLASSES = ["HausdorffDistanceMetric", "SurfaceDistanceMetric", "SurfaceDiceMetric", "DiceMetric"]
METRIC_FUNCTIONS = ["compute_hausdorff_distance", "compute_average_surface_distance", "compute_surface_dice",
                    "compute_dice"]


# ---------------------------------------------------------------------------------------------------------------
# helpers

def _run(fn, *args):
    """``(result, warning messages, monai-layer events)`` of ``fn(*args)``."""
    with warnings.catch_warnings(record=True) as w, observe.engines() as seen:
        warnings.simplefilter("always")
        out = fn(*args)
    # MONAI's deprecation notices about its own internal calls are not behaviour a drop-in reproduces
    skip = (FallbackWarning, FutureWarning, DeprecationWarning)
    return out, [str(x.message) for x in w if not issubclass(x.category, skip)], seen.all("monai")


def _onehot(labels, C, dtype=torch.float32):
    return torch.nn.functional.one_hot(labels, C).movedim(-1, 1).to(dtype)


def _targets(kind, B, C, spatial, gen):
    labels = torch.randint(0, C, (B, 1) + spatial, generator=gen)
    if kind == "labels":
        return labels
    if kind == "background":  # every voxel background: empty foreground classes
        return torch.zeros_like(labels)
    if kind == "float_labels":
        return labels.float()
    if kind == "onehot":
        return _onehot(labels[:, 0], C)
    if kind == "int_onehot":
        return _onehot(labels[:, 0], C, torch.int64)
    if kind == "bool_onehot":
        return _onehot(labels[:, 0], C, torch.bool)
    if kind == "soft":
        return torch.rand((B, C) + spatial, generator=gen)
    raise ValueError(kind)


def _compare_loss(ours, theirs, x, y, dtype=torch.float32, rtol=1e-5):
    """Forward value, warnings and input gradient of a fastgsl.monai loss against its MONAI original."""
    x1 = x.to(dtype).requires_grad_()
    x2 = x.to(dtype).requires_grad_()
    a, wa, ev = _run(ours, x1, y)
    b, wb, _ = _run(theirs, x2, y)
    assert ev == ["fastgsl"], f"the fastgsl path did not answer: {ev}"
    assert wa == wb
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * 1e-1, equal_nan=True)
    ga, = torch.autograd.grad(a.sum(), x1)
    gb, = torch.autograd.grad(b.sum(), x2)
    scale = gb.abs().max().clamp_min(1e-30)
    assert ((ga - gb).abs().max() / scale).item() <= rtol, "gradient differs from MONAI's autograd"
    return a, b


# ---------------------------------------------------------------------------------------------------------------
# API shape: same signatures, subclasses of MONAI's classes, no import of MONAI by fastgsl itself

@pytest.mark.parametrize("name", LOSSES)
def test_loss_signature_and_type(name):
    ours, theirs = getattr(FL, name), getattr(ML, name)
    assert issubclass(ours, theirs) or (name == "LogHausdorffDTLoss" and issubclass(ours, ML.HausdorffDTLoss))
    assert inspect.signature(ours) == inspect.signature(theirs)


@pytest.mark.parametrize("name", METRIC_CLASSES + METRIC_FUNCTIONS)
def test_metric_signature_and_type(name):
    ours, theirs = getattr(FM, name), getattr(MM, name)
    if inspect.isclass(ours):
        assert issubclass(ours, theirs) and issubclass(ours, MM.CumulativeIterationMetric)
    sig_a, sig_b = inspect.signature(ours), inspect.signature(theirs)
    assert [(p.name, p.default, p.kind) for p in sig_a.parameters.values()] == \
        [(p.name, p.default, p.kind) for p in sig_b.parameters.values()]


def test_import_fastgsl_does_not_import_monai():
    code = ("import sys, fastgsl, fastgsl.losses, fastgsl.metrics, fastgsl.monai; "
            "bad = [m for m in ('monai', 'fastgsl.monai.losses', 'fastgsl.monai.metrics') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_state_dict_keys_are_monais():
    w = torch.tensor([1.0, 2.0, 3.0])
    assert FL.DiceCELoss(weight=w).state_dict().keys() == ML.DiceCELoss(weight=w).state_dict().keys()
    assert FL.DiceLoss(weight=w).state_dict().keys() == ML.DiceLoss(weight=w).state_dict().keys()


# ---------------------------------------------------------------------------------------------------------------
# losses against MONAI

# (kwargs, B, C, spatial, target kind); every case runs on fresh random logits
DICE_CASES = [
    (dict(softmax=True, to_onehot_y=True), 2, 3, (7, 9, 5), "labels"),
    (dict(softmax=True, to_onehot_y=True, include_background=False, reduction="none"), 3, 5, (9, 7), "labels"),
    (dict(softmax=True, to_onehot_y=True, batch=True, reduction="none"), 2, 3, (5, 6, 7), "float_labels"),
    (dict(softmax=True, squared_pred=True, reduction="sum"), 2, 3, (11, 7), "onehot"),
    (dict(softmax=True, jaccard=True, include_background=False), 2, 5, (7, 5, 6), "int_onehot"),
    (dict(softmax=True, jaccard=True, squared_pred=True, batch=True), 3, 2, (9, 9), "onehot"),
    (dict(sigmoid=True), 2, 3, (7, 9), "soft"),
    (dict(sigmoid=True, squared_pred=True, soft_label=True), 2, 3, (7, 9), "soft"),
    (dict(sigmoid=True, soft_label=True, include_background=False), 2, 3, (5, 7, 6), "onehot"),
    (dict(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-3), 2, 1, (9, 11), "onehot"),
    (dict(other_act=torch.tanh), 2, 3, (9, 7), "onehot"),
    (dict(other_act=lambda z: torch.softmax(2.0 * z, 1), to_onehot_y=True), 2, 3, (7, 6, 5), "labels"),
    (dict(), 2, 2, (9, 7), "onehot"),
    (dict(softmax=True, to_onehot_y=True, weight=torch.tensor([0.5, 1.0, 2.0, 3.0])), 2, 4, (7, 9), "labels"),
    (dict(softmax=True, to_onehot_y=True, weight=2.5, include_background=False, reduction="none"), 2, 3, (7, 9),
     "labels"),
    (dict(softmax=True, to_onehot_y=True, include_background=False), 2, 1, (7, 9), "onehot"),  # 3 warnings
    (dict(softmax=True, to_onehot_y=True, include_background=False, batch=True), 2, 3, (7, 7), "background"),
    (dict(sigmoid=True, to_onehot_y=True, squared_pred=True), 2, 3, (5, 7, 9), "background"),
    (dict(softmax=True, to_onehot_y=True, reduction="none"), 3, 3, (17,), "labels"),  # 1-D, as MONAI accepts
]


@pytest.mark.parametrize("kw,B,C,spatial,kind", DICE_CASES)
def test_dice_loss(kw, B, C, spatial, kind):
    g = torch.Generator().manual_seed(hash((B, C, spatial, kind)) % 2 ** 31)
    x = 2 * torch.randn((B, C) + spatial, generator=g)
    if not (kw.get("softmax") or kw.get("sigmoid") or kw.get("other_act")):
        x = torch.rand((B, C) + spatial, generator=g)  # already probabilities
    y = _targets(kind, B, C, spatial, g)
    _compare_loss(FL.DiceLoss(**kw), ML.DiceLoss(**kw), x, y)


@pytest.mark.parametrize("w_type", ["square", "simple", "uniform"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_generalized_dice_loss(w_type, batch, include_background):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, 7, 6, 5, generator=g)
    y = torch.randint(0, 4, (3, 1, 7, 6, 5), generator=g)  # class 4 absent: infinite weight replaced
    y[0][y[0] == 2] = 0  # class 2 absent from one item only
    kw = dict(softmax=True, to_onehot_y=True, w_type=w_type, batch=batch, include_background=include_background,
              reduction="none")
    _compare_loss(FL.GeneralizedDiceLoss(**kw), ML.GeneralizedDiceLoss(**kw), x, y)


@pytest.mark.parametrize("kw,kind", [
    (dict(sigmoid=True, soft_label=True, reduction="sum"), "onehot"),
    (dict(sigmoid=True, smooth_nr=0.0), "soft"),
    (dict(), "onehot"),
])
def test_generalized_dice_loss_options(kw, kind):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 8, generator=g)
    if not kw.get("sigmoid"):
        x = torch.rand(2, 3, 9, 8, generator=g)
    y = _targets(kind, 2, 3, (9, 8), g)
    _compare_loss(FL.GeneralizedDiceLoss(**kw), ML.GeneralizedDiceLoss(**kw), x, y)


W3 = torch.tensor([0.2, 1.0, 3.0])
DICE_CE_CASES = [
    (dict(softmax=True, to_onehot_y=True), 2, 3, (7, 9, 5), "labels"),  # one fused pass
    (dict(softmax=True, to_onehot_y=True, include_background=False, weight=W3), 2, 3, (9, 7), "labels"),
    (dict(softmax=True, to_onehot_y=True, weight=W3, label_smoothing=0.1), 3, 3, (7, 6, 5), "labels"),
    (dict(softmax=True, label_smoothing=0.2, weight=W3, reduction="sum"), 2, 3, (9, 7), "onehot"),
    (dict(softmax=True, squared_pred=True, jaccard=True, batch=True, lambda_dice=0.3, lambda_ce=1.7), 2, 5,
     (7, 5), "soft"),
    (dict(sigmoid=True), 2, 3, (7, 9), "onehot"),  # sigmoid Dice, softmax CE: two passes, as MONAI
    (dict(sigmoid=True), 3, 1, (9, 7, 5), "onehot"),  # BCE
    (dict(sigmoid=True, weight=torch.tensor([2.5])), 2, 1, (9, 7), "onehot"),  # BCE with pos_weight
    (dict(softmax=True, to_onehot_y=True), 2, 1, (9, 7), "onehot"),  # single channel: warnings, raw Dice
    (dict(other_act=torch.sigmoid, to_onehot_y=True, reduction="sum"), 2, 2, (9, 7), "labels"),
    (dict(to_onehot_y=True, lambda_dice=0.0), 2, 3, (6, 7, 5), "labels"),
    (dict(softmax=True, to_onehot_y=True), 3, 2, (19,), "labels"),  # 1-D
]


@pytest.mark.parametrize("kw,B,C,spatial,kind", DICE_CE_CASES)
def test_dice_ce_loss(kw, B, C, spatial, kind):
    g = torch.Generator().manual_seed(hash((B, C, spatial, kind, len(kw))) % 2 ** 31)
    x = 2 * torch.randn((B, C) + spatial, generator=g)
    y = _targets(kind, B, C, spatial, g)
    _compare_loss(FL.DiceCELoss(**kw), ML.DiceCELoss(**kw), x, y)


def test_dice_ce_fuses_one_pass_and_is_deterministic():
    from fastgsl.monai import _stats
    calls = []
    real = _stats.voxel_stats

    def counting(*a, **k):
        calls.append(k["spec"].activation)
        return real(*a, **k)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 9, 8, 7, generator=g, requires_grad=True)
    y = torch.randint(0, 4, (2, 1, 9, 8, 7), generator=g)
    loss = FL.DiceCELoss(softmax=True, to_onehot_y=True)
    _stats.voxel_stats = counting
    try:
        a = loss(x, y)
    finally:
        _stats.voxel_stats = real
    assert calls == ["softmax"]
    ga, = torch.autograd.grad(a, x)
    b = loss(x, y)
    gb, = torch.autograd.grad(b, x)
    assert torch.equal(a, b) and torch.equal(ga, gb)


HD_CASES = [
    (dict(softmax=True, to_onehot_y=True), 2, 3, (9, 8, 7), "labels"),
    (dict(softmax=True, to_onehot_y=True, include_background=True, reduction="none"), 3, 5, (11, 9), "labels"),
    (dict(sigmoid=True, alpha=1.0, batch=True, reduction="none"), 2, 3, (7, 9, 6), "onehot"),
    (dict(sigmoid=True, alpha=0.5, reduction="sum"), 2, 2, (13, 9), "soft"),
    (dict(sigmoid=True), 2, 1, (9, 11), "onehot"),
    (dict(other_act=torch.sigmoid, alpha=3.0), 2, 2, (8, 7, 9), "onehot"),
    (dict(softmax=True, batch=True), 3, 3, (7, 11), "int_onehot"),  # MONAI truncates this field
    (dict(), 2, 3, (9, 7), "onehot"),
    (dict(softmax=True, to_onehot_y=True, reduction="none"), 2, 3, (7, 9), "background"),
]


@pytest.mark.parametrize("name", ["HausdorffDTLoss", "LogHausdorffDTLoss"])
@pytest.mark.parametrize("kw,B,C,spatial,kind", HD_CASES)
def test_hausdorff_dt_loss(name, kw, B, C, spatial, kind):
    g = torch.Generator().manual_seed(hash((B, C, spatial, kind, name)) % 2 ** 31)
    x = 2 * torch.randn((B, C) + spatial, generator=g)
    if not (kw.get("softmax") or kw.get("sigmoid") or kw.get("other_act")):
        x = torch.rand((B, C) + spatial, generator=g)
    y = _targets(kind, B, C, spatial, g)
    _compare_loss(getattr(FL, name)(**kw), getattr(ML, name)(**kw), x, y)


def test_hausdorff_dt_loss_edge_masks():
    """Empty and full masks (distance field 0), one-voxel objects, objects on the border."""
    x = torch.full((2, 3, 9, 8, 7), -4.0)
    x[:, 0] = 4.0  # the prediction is background everywhere: empty channels 1, 2, full channel 0
    x[1, 2, 0, 0, 0] = 9.0  # a one-voxel predicted object in the corner
    y = torch.zeros(2, 1, 9, 8, 7, dtype=torch.long)
    y[0, 0, 4, 4, 3] = 2  # one-voxel object
    y[1, 0, :, :, 0] = 1  # a slab on the border
    for kw in (dict(softmax=True, to_onehot_y=True), dict(softmax=True, to_onehot_y=True, include_background=True)):
        _compare_loss(FL.HausdorffDTLoss(**kw), ML.HausdorffDTLoss(**kw), x, y)


@pytest.mark.parametrize("name,kw", [
    ("DiceLoss", dict(softmax=True, to_onehot_y=True, jaccard=True, include_background=False)),
    ("GeneralizedDiceLoss", dict(softmax=True, to_onehot_y=True, w_type="simple")),
    ("DiceCELoss", dict(softmax=True, to_onehot_y=True, weight=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64),
                        label_smoothing=0.1)),
    ("HausdorffDTLoss", dict(softmax=True, to_onehot_y=True)),
])
def test_losses_fp64_match_monai_tightly(name, kw):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 7, 6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 1, 7, 6, 5), generator=g)
    _compare_loss(getattr(FL, name)(**kw), getattr(ML, name)(**kw), x, y, dtype=torch.float64, rtol=1e-10)


def test_gradcheck_fp64():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (2, 1, 4, 5), generator=g)
    for loss in (FL.DiceCELoss(softmax=True, to_onehot_y=True, jaccard=True, label_smoothing=0.1,
                               weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)),
                 FL.GeneralizedDiceLoss(sigmoid=True, to_onehot_y=True, batch=True)):
        assert torch.autograd.gradcheck(lambda z: loss(z, y), (x,))


# ---------------------------------------------------------------------------------------------------------------
# losses: errors as MONAI raises them

def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return type(e)
    return None


@pytest.mark.parametrize("name", ["DiceLoss", "GeneralizedDiceLoss", "HausdorffDTLoss", "DiceCELoss"])
def test_loss_errors_match_monai(name):
    x = torch.randn(2, 3, 6, 7)
    for y in (torch.zeros(2, 2, 6, 7), torch.zeros(2, 3, 6, 5)):  # wrong channel count, wrong spatial shape
        kinds = {_raised(lambda: cls(softmax=True)(x, y)) for cls in (getattr(FL, name), getattr(ML, name))}
        assert len(kinds) == 1 and None not in kinds, kinds
    for kw in (dict(sigmoid=True, softmax=True), dict(other_act=3)):
        kinds = {_raised(lambda: cls(**kw)) for cls in (getattr(FL, name), getattr(ML, name))}
        assert len(kinds) == 1 and None not in kinds, kinds


def test_loss_specific_errors_match_monai():
    x = torch.randn(2, 3, 6, 7)
    y = torch.randint(0, 3, (2, 1, 6, 7))
    for mod in (FL, ML):
        with pytest.raises(ValueError):
            mod.DiceCELoss(reduction="none")
        with pytest.raises(ValueError):
            mod.DiceCELoss(lambda_ce=-1.0)
        with pytest.raises(ValueError):
            mod.DiceCELoss(to_onehot_y=True)(x, y[:, 0])  # dims differ
        with pytest.raises(ValueError):
            mod.DiceLoss(softmax=True, to_onehot_y=True, weight=[1.0, 2.0])(x, y)  # weight length
        with pytest.raises(ValueError):
            mod.DiceLoss(softmax=True, to_onehot_y=True, weight=[1.0, -2.0, 1.0])(x, y)
        with pytest.raises(ValueError):
            mod.HausdorffDTLoss()(torch.randn(2, 3, 7), torch.zeros(2, 3, 7))
        with pytest.raises(AssertionError):
            mod.DiceLoss(to_onehot_y=True)(x, _onehot(y[:, 0], 3))  # to_onehot_y on a one-hot target
    for cls in (FL.HausdorffDTLoss, ML.HausdorffDTLoss):
        with pytest.raises(RuntimeError):
            cls(sigmoid=True)(x, _onehot(y[:, 0], 3, torch.bool))
    _compare_loss(FL.DiceLoss(sigmoid=True), ML.DiceLoss(sigmoid=True), x, _onehot(y[:, 0], 3, torch.bool))
    with pytest.raises(RuntimeError, match="to_onehot_y"):  # MONAI's scatter raises RuntimeError too
        FL.DiceLoss(softmax=True, to_onehot_y=True)(x, y + 1)


@pytest.mark.parametrize("name", ["DiceLoss", "DiceCELoss", "GeneralizedDiceLoss", "HausdorffDTLoss"])
def test_onehot_label_range_is_checked_by_the_pass(name, seen):
    """With ``to_onehot_y`` each drop-in's statistics pass tests the labels as it reads them (no reduction of its
    own): a label outside [0, C), anywhere, raises MONAI's RuntimeError with the values; valid labels pass."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 7, 5, generator=g)
    y = torch.randint(0, 3, (2, 1, 9, 7, 5), generator=g)
    loss = getattr(FL, name)(softmax=True, to_onehot_y=True)
    assert torch.isfinite(loss(x, y)) and seen.all("label_check") == ["fused"]
    for flat, value in ((y.numel() - 1, 3), (y[0].numel(), -1)):
        bad = y.clone()
        bad.view(-1)[flat] = value
        with pytest.raises(RuntimeError, match=rf"to_onehot_y: target labels must lie in \[0, 3\).*\[{min(value, 0)}, "
                                               rf"{max(value, 2)}\]"):
            loss(x, bad)
        assert seen.last("label_check") == "fused"


# ---------------------------------------------------------------------------------------------------------------
# fallbacks: announced once, and the number is MONAI's

def _fresh_fallback_registry():
    _fallback._warned.clear()


@pytest.mark.parametrize("name,kw,kind", [
    ("DiceLoss", dict(softmax=True, to_onehot_y=True, ignore_index=2), "labels"),
    ("DiceLoss", dict(sigmoid=True, soft_label=True), "soft"),
    ("DiceLoss", dict(soft_label=True), "onehot"),  # raw input outside [0, 1]
    ("GeneralizedDiceLoss", dict(sigmoid=True, soft_label=True), "soft"),
])
def test_loss_fallback_warns_once_and_equals_monai(name, kw, kind):
    _fresh_fallback_registry()
    g = torch.Generator().manual_seed(2)
    x = 2 * torch.randn(2, 3, 7, 6, generator=g)
    y = _targets(kind, 2, 3, (7, 6), g)
    ours, theirs = getattr(FL, name)(**kw), getattr(ML, name)(**kw)
    with pytest.warns(FallbackWarning, match=name), observe.engines() as seen:
        a = ours(x, y)
    assert seen.all("monai") == ["monai"]
    torch.testing.assert_close(a, theirs(x, y), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        ours(x, y)  # the second call is silent


@pytest.mark.parametrize("fn,kw", [
    ("compute_hausdorff_distance", dict(distance_metric="chessboard", percentile=95)),
    ("compute_average_surface_distance", dict(distance_metric="taxicab", symmetric=True)),
    ("compute_surface_dice", dict(class_thresholds=[1.5], use_subvoxels=True)),
    ("compute_surface_dice", dict(class_thresholds=[1.0, 2.0], distance_metric="chessboard", include_background=True)),
    ("compute_dice", dict(per_component=True, include_background=False)),
])
def test_metric_fallback_warns_once_and_equals_monai(fn, kw):
    _fresh_fallback_registry()
    g = torch.Generator().manual_seed(4)
    p = _onehot(torch.randint(0, 2, (2, 9, 8, 7), generator=g), 2)
    t = _onehot(torch.randint(0, 2, (2, 9, 8, 7), generator=g), 2)
    with pytest.warns(FallbackWarning, match=fn):
        a = getattr(FM, fn)(p, t, **kw)
    torch.testing.assert_close(a, getattr(MM, fn)(p, t, **kw), equal_nan=True, rtol=0, atol=0)


def test_dice_soft_ground_truth_falls_back():
    _fresh_fallback_registry()
    p = _onehot(torch.randint(0, 3, (2, 9, 8)), 3)
    t = torch.rand(2, 3, 9, 8)
    with pytest.warns(FallbackWarning, match="soft"):
        a = FM.compute_dice(p, t)
    torch.testing.assert_close(a, MM.compute_dice(p, t), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# metrics against MONAI

def _masks(B, C, spatial, gen, p_blob=0.55):
    """Random one-hot-like binary masks with blobby objects, plus MONAI's edge cases in fixed slots."""
    def blobs():
        noise = torch.rand((B, C) + spatial, generator=gen)
        k = torch.ones((C, 1) + (3,) * len(spatial)) / 3 ** len(spatial)
        conv = torch.nn.functional.conv3d if len(spatial) == 3 else torch.nn.functional.conv2d
        return (conv(noise, k, padding=1, groups=C) > p_blob).float()
    p, t = blobs(), blobs()
    if C > 1 and B > 1:
        p[0, 1] = 0            # prediction empty, target not
        t[1, C - 1] = 0        # target empty, prediction not
        p[1, 0] = t[1, 0] = 0  # both empty
        p[0, 0] = 1            # a full mask
        t[0, C - 1] = 0
        t[0, C - 1].view(-1)[0] = 1  # one voxel, in the corner (on the border)
    return p, t


METRIC_SHAPES = [(2, 1, (11, 9)), (3, 2, (9, 8, 7)), (2, 3, (13, 11)), (2, 5, (7, 9, 6))]
SPACINGS = {"none": None, "iso": 0.7, "axes": "axes", "items": "items"}


def _spacing(kind, B, nd):
    if kind == "axes":
        return [0.8, 1.5, 1.1][:nd]
    if kind == "items":
        return [[0.5 + 0.25 * b + 0.1 * i for i in range(nd)] for b in range(B)]
    return SPACINGS[kind]


def _compare_metric(name, p, t, **kw):
    a, wa, ev = _run(lambda: getattr(FM, name)(p, t, **kw))
    b, wb, _ = _run(lambda: getattr(MM, name)(p, t, **kw))
    assert ev == ["fastgsl"]
    assert wa == wb
    assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
    return a


@pytest.mark.parametrize("B,C,spatial", METRIC_SHAPES)
@pytest.mark.parametrize("spacing", list(SPACINGS))
def test_hausdorff_and_surface_distance(B, C, spatial, spacing):
    g = torch.Generator().manual_seed(hash((B, C, spatial)) % 2 ** 31)
    p, t = _masks(B, C, spatial, g)
    sp = _spacing(spacing, B, len(spatial))
    for inc in (False, True):
        for pct in (None, 0, 50, 95, 100):
            for directed in (False, True):
                _compare_metric("compute_hausdorff_distance", p, t, include_background=inc, percentile=pct,
                                directed=directed, spacing=sp)
        for symmetric in (False, True):
            _compare_metric("compute_average_surface_distance", p, t, include_background=inc, symmetric=symmetric,
                            spacing=sp)
        n = C if inc or C == 1 else C - 1
        _compare_metric("compute_surface_dice", p, t, class_thresholds=[0.5 + c for c in range(n)],
                        include_background=inc, spacing=sp)


def test_hd95_one_empty_mask_is_nan_as_monai():
    """MONAI's value (issue #9095) is kept here; fastgsl.metrics' own policy gives inf."""
    from fastgsl.metrics import hausdorff_distance
    p = torch.zeros(1, 2, 9, 9)
    t = torch.zeros(1, 2, 9, 9)
    t[0, 1, 2:5, 2:5] = 1
    hd95 = _compare_metric("compute_hausdorff_distance", p, t, percentile=95)
    hd = _compare_metric("compute_hausdorff_distance", p, t)
    assert torch.isnan(hd95).all() and torch.isinf(hd).all()
    assert torch.isinf(hausdorff_distance(p.bool(), t.bool(), percentile=95)).all()


def test_metrics_read_masks_as_monai_does():
    """MONAI takes ``x == 1`` as the mask: a value such as 0.7 is background; numpy inputs are accepted."""
    g = torch.Generator().manual_seed(8)
    p, t = _masks(2, 3, (9, 8, 7), g)
    p = torch.where(torch.rand(p.shape, generator=g) < 0.1, 0.7, p)
    _compare_metric("compute_hausdorff_distance", p, t, percentile=95)
    _compare_metric("compute_average_surface_distance", p.numpy(), t.numpy(), symmetric=True)
    _compare_metric("compute_surface_dice", p.bool(), t.bool(), class_thresholds=[1.0, 1.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_metrics_of_channels_last_one_hot(dtype):
    """A one-hot made by ``one_hot(...).movedim(-1, 1)`` is channels-last: the masks are read in that layout, with
    MONAI's numbers and MONAI's empty-mask warnings (the mask of class 2 of item 1 is empty in the prediction)."""
    g = torch.Generator().manual_seed(21)
    t_lab = torch.randint(0, 3, (2, 9, 8, 7), generator=g)
    p_lab = torch.where(torch.rand(t_lab.shape, generator=g) < 0.2, 0, t_lab)
    p_lab[1][p_lab[1] == 2] = 1
    p, t = (torch.nn.functional.one_hot(x, 3).movedim(-1, 1).to(dtype) for x in (p_lab, t_lab))
    assert not p.is_contiguous()
    a = _compare_metric("compute_hausdorff_distance", p, t, percentile=95, include_background=True)
    assert torch.isnan(a[1, 2]) and torch.isfinite(a[0]).all()
    torch.testing.assert_close(a, FM.compute_hausdorff_distance(p.contiguous(), t.contiguous(), percentile=95,
                                                                include_background=True),
                               rtol=0, atol=0, equal_nan=True)  # the same numbers as from a contiguous copy
    _compare_metric("compute_average_surface_distance", p, t, symmetric=True)
    _compare_metric("compute_surface_dice", p, t, class_thresholds=[1.0, 1.0])


@pytest.mark.parametrize("ignore_index", [0, 2, 7])
def test_metrics_ignore_index(ignore_index):
    g = torch.Generator().manual_seed(9)
    p, t = _masks(2, 3, (9, 8, 7), g, p_blob=0.5)
    _compare_metric("compute_hausdorff_distance", p, t, ignore_index=ignore_index, percentile=95)
    _compare_metric("compute_average_surface_distance", p, t, ignore_index=ignore_index)
    _compare_metric("compute_surface_dice", p, t, class_thresholds=[1.0, 2.0], ignore_index=ignore_index)
    _compare_metric("compute_dice", p, t, ignore_index=ignore_index)


@pytest.mark.parametrize("B,C,spatial", METRIC_SHAPES)
def test_compute_dice(B, C, spatial):
    g = torch.Generator().manual_seed(hash((B, C, spatial, "dice")) % 2 ** 31)
    p, t = _masks(B, C, spatial, g)
    for inc in (True, False):
        for ignore_empty in (True, False):
            _compare_metric("compute_dice", p, t, include_background=inc, ignore_empty=ignore_empty)
            if C > 1:  # label maps (B, 1, ...) with num_classes, and bool one-hot
                lp = torch.randint(0, C, (B, 1) + spatial, generator=g)
                lt = torch.randint(0, C - 1, (B, 1) + spatial, generator=g)  # class C-1 absent
                _compare_metric("compute_dice", lp, lt, include_background=inc, ignore_empty=ignore_empty,
                                num_classes=C)
                _compare_metric("compute_dice", p.bool(), t.bool(), include_background=inc,
                                ignore_empty=ignore_empty)


# ---------------------------------------------------------------------------------------------------------------
# cumulative metrics: several batches, aggregate() with every reduction, get_not_nans, reset()

REDUCTIONS = ["none", "mean", "sum", "mean_batch", "sum_batch", "mean_channel", "sum_channel"]


@pytest.mark.parametrize("name,kw,call_kw", [
    ("HausdorffDistanceMetric", dict(percentile=95), dict(spacing=(0.8, 1.2, 1.5))),
    ("HausdorffDistanceMetric", dict(include_background=True, directed=True), {}),
    ("SurfaceDistanceMetric", dict(symmetric=True), dict(spacing=0.9)),
    ("SurfaceDiceMetric", dict(class_thresholds=[1.0, 1.5]), {}),
    ("DiceMetric", dict(include_background=False), {}),
    ("DiceMetric", dict(ignore_empty=False, ignore_index=1), {}),
])
def test_cumulative_metrics(name, kw, call_kw):
    g = torch.Generator().manual_seed(hash(name) % 2 ** 31)
    batches = [_masks(B, 3, (9, 8, 7), g) for B in (2, 3, 2)]
    for get_not_nans in (False, True):
        ours = getattr(FM, name)(get_not_nans=get_not_nans, **kw)
        theirs = getattr(MM, name)(get_not_nans=get_not_nans, **kw)
        for i, (p, t) in enumerate(batches):
            if i == 1:  # MONAI's other input form: lists of channel-first tensors
                p, t = list(p), list(t)
            with warnings.catch_warnings(), observe.engines() as seen:
                warnings.simplefilter("ignore")
                a, b = ours(p, t, **call_kw), theirs(p, t, **call_kw)
            assert "fastgsl" in seen.all("monai") and "monai" not in seen.all("monai")
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
        for reduction in REDUCTIONS:
            ra, rb = ours.aggregate(reduction), theirs.aggregate(reduction)
            if get_not_nans:
                torch.testing.assert_close(ra[0], rb[0], rtol=1e-5, atol=1e-6, equal_nan=True)
                torch.testing.assert_close(ra[1], rb[1], rtol=0, atol=0)
            else:
                torch.testing.assert_close(ra, rb, rtol=1e-5, atol=1e-6, equal_nan=True)
        ours.reset()
        assert ours.get_buffer() is None  # MONAI's reset: nothing buffered
        p, t = batches[0]
        ours(p, t, **call_kw)
        theirs.reset()
        theirs(p, t, **call_kw)
        torch.testing.assert_close(ours.get_buffer(), theirs.get_buffer(), rtol=1e-5, atol=1e-6, equal_nan=True)


def test_metric_errors_match_monai():
    p = torch.zeros(2, 3, 9, 8)
    for mod in (FM, MM):
        with pytest.raises(ValueError):
            mod.compute_hausdorff_distance(p, torch.zeros(2, 3, 9, 7))
        with pytest.raises(ValueError):
            mod.compute_surface_dice(p, p, class_thresholds=[1.0])
        with pytest.raises(ValueError):
            mod.compute_surface_dice(p, p, class_thresholds=[1.0, -1.0])
        with pytest.raises(ValueError):
            mod.compute_hausdorff_distance(p, p, spacing=[1.0, 1.0, 1.0])
        with pytest.raises(ValueError):
            mod.HausdorffDistanceMetric()(torch.zeros(2, 3), torch.zeros(2, 3))
    q = p.clone()
    q[:, :, 2:5, 2:5] = 1
    for mod in (FM, MM):  # MONAI checks the percentile only where there are distances
        with pytest.raises(ValueError, match="percentile"):
            mod.compute_hausdorff_distance(q, q, percentile=120)
