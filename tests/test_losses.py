"""Every loss against its installed peer (MONAI, MIST, torch), the naive formula, and its gradient."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from fastgsl import reference as ref
from fastgsl.dtm import labels_to_dtm
from fastgsl.losses import (BoundaryLoss, CompositeLoss, CrossEntropyLoss, DiceCELoss, DiceLoss,
                            GeneralizedDiceLoss, GeneralizedSurfaceLoss, HausdorffLoss)
from fastgsl.weights import class_weights

monai_losses = pytest.importorskip("monai.losses", reason="monai is the peer for Dice, DiceCE and GDL")

SHAPES = [(2, 3, 9, 11, 7), (1, 2, 13, 9), (2, 5, 7, 9, 5), (2, 3, 17, 15)]


def make(shape, seed=0, dtype=torch.float32, scale=2.0, absent=None):
    g = torch.Generator().manual_seed(seed)
    B, C, *sp = shape
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, C, (B, *sp), generator=g)
    if absent is not None:
        labels[labels == absent] = 0
    return logits, labels


def close(a, b, tol=1e-5):
    torch.testing.assert_close(torch.as_tensor(a).double(), torch.as_tensor(b).double(), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------- MONAI peers
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("squared_pred,include_background,batch",
                         list(itertools.product([True, False], repeat=3)))
def test_dice_equals_monai(shape, squared_pred, include_background, batch):
    logits, labels = make(shape, seed=sum(shape), absent=1 if shape[1] > 2 else None)
    peer = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, squared_pred=squared_pred,
                                 include_background=include_background, batch=batch)
    ours = DiceLoss(squared_pred=squared_pred, include_background=include_background, batch=batch)
    close(ours(logits, labels), peer(logits, labels.unsqueeze(1)))


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_dice_reductions_equal_monai(reduction):
    logits, labels = make((2, 3, 9, 8, 7))
    peer = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, reduction=reduction)
    ours = DiceLoss(reduction=reduction, squared_pred=False)
    close(ours(logits, labels).flatten(), peer(logits, labels.unsqueeze(1)).flatten())


def test_sigmoid_dice_multilabel_equals_monai():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 11, 9, 7, generator=g)
    # nested regions overlap, like BraTS WT ⊃ TC ⊃ ET
    r = torch.rand(2, 1, 11, 9, 7, generator=g)
    target = torch.cat([r > 0.3, r > 0.6, r > 0.85], 1).float()
    peer = monai_losses.DiceLoss(sigmoid=True, squared_pred=True)
    close(DiceLoss(activation="sigmoid")(logits, target), peer(logits, target))


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (0.3, 1.7)])
def test_dice_ce_equals_monai(shape, include_background, lambdas):
    logits, labels = make(shape, seed=5)
    peer = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, include_background=include_background,
                                   lambda_dice=lambdas[0], lambda_ce=lambdas[1], squared_pred=True)
    ours = DiceCELoss(lambda_dice=lambdas[0], lambda_ce=lambdas[1], include_background=include_background)
    close(ours(logits, labels), peer(logits, labels.unsqueeze(1)))


def test_dice_ce_sum_and_single_channel_sigmoid_equal_monai():
    logits, labels = make((2, 3, 7, 9, 5), seed=8)
    peer = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, reduction="sum")
    close(DiceCELoss(reduction="sum", squared_pred=False)(logits, labels), peer(logits, labels.unsqueeze(1)))
    # one channel: MONAI switches to BCE, as our sigmoid path does
    logit1 = torch.randn(2, 1, 9, 7, 5)
    bin_labels = (torch.rand(2, 1, 9, 7, 5) > 0.5).long()
    peer = monai_losses.DiceCELoss(sigmoid=True)
    close(DiceCELoss(activation="sigmoid", squared_pred=False)(logit1, bin_labels), peer(logit1, bin_labels.float()))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("include_background,batch", [(True, False), (False, False), (True, True)])
def test_generalized_dice_equals_monai(shape, include_background, batch):
    logits, labels = make(shape, seed=11, absent=shape[1] - 1)  # an absent class exercises the inf rule
    peer = monai_losses.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, w_type="square",
                                            include_background=include_background, batch=batch)
    ours = GeneralizedDiceLoss(include_background=include_background, batch=batch)
    close(ours(logits, labels), peer(logits, labels.unsqueeze(1)), tol=2e-5)


def test_generalized_dice_fixed_weights_and_squared_equal_reference():
    logits, labels = make((2, 3, 9, 7, 5), dtype=torch.float64)
    w = class_weights([5000, 300, 20])
    for squared in (False, True):
        ours = GeneralizedDiceLoss(class_weights=w, squared_pred=squared)(logits, labels)
        close(ours, ref.generalized_dice(logits, labels, class_weights=w, squared_pred=squared), 1e-10)


# ---------------------------------------------------------------------------------------------- torch peer
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_equals_torch(shape):
    logits, labels = make(shape, seed=2)
    close(CrossEntropyLoss()(logits, labels), F.cross_entropy(logits, labels))
    close(CrossEntropyLoss(reduction="sum")(logits, labels), F.cross_entropy(logits, labels, reduction="sum"),
          1e-4)
    close(CrossEntropyLoss(reduction="none")(logits, labels), F.cross_entropy(logits, labels, reduction="none"))
    probs = torch.softmax(torch.randn(shape), 1)  # probability targets
    close(CrossEntropyLoss()(logits, probs), F.cross_entropy(logits, probs))
    multi = (torch.rand(shape) > 0.5).float()
    close(CrossEntropyLoss(activation="sigmoid")(logits, multi), F.binary_cross_entropy_with_logits(logits, multi))


# ---------------------------------------------------------------------------------------------- MIST peers
mist = pytest.importorskip("mist.loss_functions.losses.generalized_surface",
                           reason="mist-medical 2.3.0 is the peer for GSL, BL and HL")


def _mist(name):
    import importlib
    mod, cls = {"gsl": ("generalized_surface", "GenSurfLoss"), "bl": ("boundary", "BoundaryLoss"),
                "hl": ("hausdorff_one_sided", "HDOneSidedLoss")}[name]
    return getattr(importlib.import_module(f"mist.loss_functions.losses.{mod}"), cls)()


@pytest.mark.parametrize("shape", [(2, 3, 9, 11, 7), (1, 2, 13, 9, 5), (2, 5, 7, 9, 5)])
def test_boundary_hausdorff_gsl_equal_mist(shape):
    logits, labels = make(shape, seed=21)
    dtm = labels_to_dtm(labels, shape[1], spacing=(1.5, 0.8, 1.0))
    y = labels.unsqueeze(1)
    close(BoundaryLoss(include_background=False)(logits, labels, dtm), _mist("bl")(y, logits, dtm=dtm, alpha=0.0))
    close(HausdorffLoss(include_background=False)(logits, labels, dtm), _mist("hl")(y, logits, dtm=dtm, alpha=0.0),
          1e-4)
    gsl = GeneralizedSurfaceLoss(class_reduction="mean", include_background=False)
    close(gsl(logits, labels, dtm), _mist("gsl")(y, logits, dtm=dtm, alpha=0.0))


@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_composite_equals_mist_gen_surf_loss(alpha):
    """MIST's GenSurfLoss is alpha * 0.5 (CE + Dice) + (1 - alpha) * surface; its Dice is the squared one with
    1e-6 in the denominator, i.e. our DiceCELoss(0.5, 0.5, squared_pred=True, smooth 1e-6)."""
    logits, labels = make((2, 4, 9, 7, 11), seed=4)
    dtm = labels_to_dtm(labels, 4)
    region = DiceCELoss(lambda_dice=0.5, lambda_ce=0.5, squared_pred=True, smooth_nr=1e-6, smooth_dr=1e-6)
    ours = CompositeLoss(region, GeneralizedSurfaceLoss(class_reduction="mean", include_background=False), alpha)
    assert ours.fused
    close(ours(logits, labels, dtm), _mist("gsl")(labels.unsqueeze(1), logits, dtm=dtm, alpha=alpha))


def test_gsl_paper_weights_equal_reference():
    """The paper's code: eq. 12 per item with eq. 13 weights, background kept, averaged over the batch."""
    logits, labels = make((2, 3, 9, 11, 7), seed=6, dtype=torch.float64)
    dtm = labels_to_dtm(labels, 3).double()
    w = class_weights(torch.tensor([9000.0, 700.0, 85.0]))
    ours = GeneralizedSurfaceLoss(class_weights=w)(logits, labels, dtm)
    close(ours, ref.generalized_surface(logits, labels, dtm, class_weights=w), 1e-10)
    # uniform weights are the default
    close(GeneralizedSurfaceLoss()(logits, labels, dtm), ref.generalized_surface(logits, labels, dtm), 1e-10)


# ---------------------------------------------------------------------------------------------- naive formula, gradients
def _cases():
    return [
        ("dice", DiceLoss(), lambda z, y, d: ref.dice(z, y)),
        ("dice_nb_batch", DiceLoss(include_background=False, batch=True, squared_pred=False),
         lambda z, y, d: ref.dice(z, y, include_background=False, batch=True, squared_pred=False)),
        ("dice_ce", DiceCELoss(), lambda z, y, d: ref.dice_ce(z, y)),
        ("ce", CrossEntropyLoss(), lambda z, y, d: ref.cross_entropy(z, y)),
        ("gdl", GeneralizedDiceLoss(), lambda z, y, d: ref.generalized_dice(z, y)),
        ("bl", BoundaryLoss(), lambda z, y, d: ref.boundary(z, d)),
        ("hl", HausdorffLoss(), lambda z, y, d: ref.hausdorff(z, y, d)),
        ("gsl", GeneralizedSurfaceLoss(), lambda z, y, d: ref.generalized_surface(z, y, d)),
        ("gsl_mean", GeneralizedSurfaceLoss(class_reduction="mean", include_background=False),
         lambda z, y, d: ref.generalized_surface(z, y, d, class_reduction="mean", include_background=False)),
        ("dicece+gsl", CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.4),
         lambda z, y, d: 0.4 * ref.dice_ce(z, y) + 0.6 * ref.generalized_surface(z, y, d)),
        ("dicece+bl", CompositeLoss(DiceCELoss(), BoundaryLoss(), 0.7),
         lambda z, y, d: 0.7 * ref.dice_ce(z, y) + 0.3 * ref.boundary(z, d)),
    ]


CASES = _cases()


@pytest.mark.parametrize("name,loss,naive", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("shape", [(2, 3, 9, 7, 5), (2, 5, 11, 13), (1, 2, 7, 5, 9)])
def test_value_and_gradient_match_naive_autograd(name, loss, naive, shape):
    logits, labels = make(shape, seed=len(name), dtype=torch.float64)
    dtm = labels_to_dtm(labels, shape[1]).double() / 4
    z1 = logits.clone().requires_grad_()
    z2 = logits.clone().requires_grad_()
    v1 = loss(z1, labels, dtm)
    v2 = naive(z2, labels, dtm)
    close(v1, v2, 1e-10)
    g = torch.tensor(1.7, dtype=torch.float64)  # a grad_output that is not 1
    (v1 * g).backward()
    (v2 * g).backward()
    close(z1.grad, z2.grad, 1e-10)


@pytest.mark.parametrize("name,loss,naive", CASES, ids=[c[0] for c in CASES])
def test_gradcheck_float64(name, loss, naive):
    logits, labels = make((2, 3, 4, 5, 3), seed=1, dtype=torch.float64)
    dtm = labels_to_dtm(labels, 3).double()
    z = logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: loss(x, labels, dtm), (z,), eps=1e-6, atol=1e-6)


def test_gradcheck_sigmoid_and_not_last_op():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 5, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = (torch.rand(2, 3, 5, 4, 3, generator=g) > 0.5).double()
    dtm = torch.randn(2, 3, 5, 4, 3, generator=g, dtype=torch.float64)
    loss = CompositeLoss(DiceCELoss(activation="sigmoid"), GeneralizedSurfaceLoss(activation="sigmoid"), 0.5)
    w = torch.randn(3, dtype=torch.float64, generator=g)

    def f(x):  # the loss is not the last op, and its input is not a leaf
        return torch.tanh(loss(x * w.view(1, 3, 1, 1, 1), t, dtm)) * 3.0

    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits(dtype):
    logits, labels = make((2, 3, 9, 7, 5), seed=9, dtype=dtype)
    dtm = labels_to_dtm(labels, 3)
    loss = CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5)
    z = logits.clone().requires_grad_()
    v = loss(z, labels, dtm)
    v.backward()
    assert v.dtype == torch.float32 and z.grad.dtype == dtype
    z32 = logits.float().requires_grad_()  # same values, computed in fp32 by the naive formula
    v32 = 0.5 * ref.dice_ce(z32, labels) + 0.5 * ref.generalized_surface(z32, labels, dtm)
    v32.backward()
    close(v, v32, 1e-5)
    torch.testing.assert_close(z.grad, z32.grad.to(dtype), rtol=2e-2, atol=1e-4)


# ---------------------------------------------------------------------------------------------- properties, edge cases
def test_gsl_bounds():
    logits, labels = make((2, 3, 11, 9, 7), seed=12)
    t = ref.one_hot(labels, 3)
    dtm = labels_to_dtm(labels, 3)
    gsl = GeneralizedSurfaceLoss(activation="none", smooth=0.0)
    close(gsl(t, labels, dtm), 0.0, 1e-6)
    close(gsl(1 - t, labels, dtm), 1.0, 1e-6)
    for seed in range(5):
        p = torch.softmax(make((2, 3, 11, 9, 7), seed=seed, scale=4.0)[0], 1)
        v = gsl(p, labels, dtm, )
        assert 0.0 <= v.item() <= 1.0
        w = GeneralizedSurfaceLoss(activation="none", reduction="none", class_weights=[0.2, 0.5, 0.3])(p, labels, dtm)
        assert bool(((w >= 0) & (w <= 1)).all())


@pytest.mark.parametrize("case", ["absent", "full", "one_voxel", "border"])
def test_edge_cases_match_naive(case):
    B, C, sp = 2, 3, (9, 11, 7)
    labels = torch.zeros((B,) + sp, dtype=torch.long)
    if case == "absent":
        labels[:, 2:5, 3:8, 1:4] = 1  # class 2 absent everywhere
    elif case == "one_voxel":
        labels[:, 4, 5, 3] = 2
        labels[0, 1, 1, 1] = 1
    elif case == "border":
        labels[:, :3] = 1
        labels[:, :, :, -2:] = 2
    logits, _ = make((B, C) + sp, seed=13, dtype=torch.float64)
    dtm = labels_to_dtm(labels, C).double()
    assert bool(torch.isfinite(dtm).all())
    for name, loss, naive in CASES:
        z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        v1, v2 = loss(z1, labels, dtm), naive(z2, labels, dtm)
        assert torch.isfinite(v1), name
        close(v1, v2, 1e-9)
        v1.backward()
        v2.backward()
        close(z1.grad, z2.grad, 1e-9)


def test_dtm_on_the_fly_with_anisotropic_spacing():
    logits, labels = make((2, 3, 9, 11, 7), seed=14)
    sp = (2.5, 0.7, 1.2)
    for cls in (BoundaryLoss, HausdorffLoss, GeneralizedSurfaceLoss):
        on_the_fly = cls(spacing=sp)(logits, labels)
        given = cls()(logits, labels, labels_to_dtm(labels, 3, spacing=sp))
        assert torch.equal(on_the_fly, given), cls.__name__
    # spacing matters: the loss actually reads it
    assert not torch.equal(BoundaryLoss(spacing=sp)(logits, labels), BoundaryLoss()(logits, labels))


def test_two_sided_hausdorff_uses_prediction_dtm():
    from fastgsl.dtm import signed_distance
    logits, labels = make((2, 3, 9, 11, 7), seed=15, dtype=torch.float64)
    dtm = labels_to_dtm(labels, 3).double()
    dp = signed_distance(torch.softmax(logits, 1) > 0.5, spatial_dims=3).double()
    z = logits.clone().requires_grad_()
    v = HausdorffLoss(two_sided=True)(z, labels, dtm)
    close(v, ref.hausdorff(logits, labels, dtm, dp), 1e-10)
    assert v > HausdorffLoss()(logits, labels, dtm)


def test_deterministic_bitwise():
    logits, labels = make((2, 4, 17, 19, 23), seed=16)
    dtm = labels_to_dtm(labels, 4)
    loss = CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5)
    results = []
    for _ in range(2):
        z = logits.clone().requires_grad_()
        v = loss(z, labels, dtm)
        v.backward()
        results.append((v.detach(), z.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_nan_logits_propagate():
    logits, labels = make((1, 3, 7, 9, 5), seed=17)
    logits[0, 1, 3, 4, 2] = float("nan")
    dtm = labels_to_dtm(labels, 3)
    for name, loss, _ in CASES:
        z = logits.clone().requires_grad_()
        v = loss(z, labels, dtm)
        assert torch.isnan(v), name


def test_one_shared_statistics_pass(monkeypatch, seen):
    """A fused composite runs the statistics pass once and the gradient pass once."""
    monkeypatch.setenv("FASTGSL_BACKEND", "torch")
    logits, labels = make((2, 3, 9, 7, 5))
    z = logits.requires_grad_()
    CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5)(z, labels).backward()
    assert seen.all("voxel_stats") == ["native", "native"]  # one statistics pass, one gradient pass
    assert seen.all("edt") == ["host"]  # the target's DTM, computed once


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    logits, labels = make((2, 3, 9, 7, 5))
    dl, gsl = DiceLoss(), GeneralizedSurfaceLoss()
    with pytest.raises(ValueError, match="label"):
        dl(logits, labels[:, :8])  # mismatched shapes
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        dl(logits, labels + 1)  # labels outside [0, C)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        dl(logits, labels - 1)
    with pytest.raises(ValueError, match="single channel"):
        dl(logits[:, :1], labels.clamp(max=0))  # one-channel softmax
    with pytest.raises(TypeError, match="integer labels"):
        dl(logits, labels.float())  # float labels where integers are required
    with pytest.raises(TypeError, match="integer labels"):
        dl(logits, labels.unsqueeze(1).float())
    with pytest.raises(ValueError, match="target is on meta"):
        dl(logits, labels.to("meta"))
    with pytest.raises(ValueError, match="spatial dimensions"):
        dl(logits[..., 0, 0], labels[..., 0, 0])  # 1-D spatial
    with pytest.raises(ValueError, match="spatial dimensions"):
        dl(logits.unsqueeze(-1), labels.unsqueeze(-1))  # 4-D spatial
    with pytest.raises(ValueError, match="dtm must have"):
        gsl(logits, labels, torch.zeros(2, 3, 9, 7))  # dtm of the wrong shape
    with pytest.raises(TypeError, match="floating-point"):
        dl(labels.unsqueeze(1).repeat(1, 3, 1, 1, 1), labels)  # integer logits
    with pytest.raises(ValueError, match="float target must have"):
        dl(logits, torch.rand(2, 4, 9, 7, 5))
    with pytest.raises(ValueError, match="activation"):
        DiceLoss(activation="relu")
    with pytest.raises(ValueError, match="reduction"):
        DiceLoss(reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        DiceCELoss(reduction="none")
    with pytest.raises(ValueError, match="class_reduction"):
        GeneralizedSurfaceLoss(class_reduction="max")
    with pytest.raises(ValueError, match="class_weights has 2"):
        GeneralizedSurfaceLoss(class_weights=[0.5, 0.5])(logits, labels, labels_to_dtm(labels, 3))
    with pytest.raises(ValueError, match="logits"):
        CrossEntropyLoss(activation="none")
    with pytest.raises(ValueError, match="dtm_convention"):
        GeneralizedSurfaceLoss(dtm_convention="scipy")


@pytest.mark.parametrize("shape", [(0, 3, 9, 7, 5), (2, 0, 9, 7, 5), (2, 3, 0, 7, 5)])
def test_empty_inputs_get_a_clear_error(shape):
    """An empty batch, no channel or an empty spatial axis is refused by name (it used to be an IndexError)."""
    logits = torch.zeros(shape)
    labels = torch.zeros((shape[0],) + shape[2:], dtype=torch.long)
    for loss in (DiceCELoss(), GeneralizedSurfaceLoss(), CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss())):
        with pytest.raises(ValueError, match="logits must not be empty"):
            loss(logits, labels)


def test_labels_are_checked_once_per_forward(monkeypatch, seen):
    """The statistics pass checks the label range as it reads the labels: no reduction of its own, and the
    on-the-fly DTM trusts it.  The public DTM function still checks its labels itself."""
    import fastgsl.validation as validation
    calls = []
    real = validation.LabelRange.check

    def counting(self, *a, **k):
        calls.append(self.name)
        return real(self, *a, **k)

    monkeypatch.setattr(validation.LabelRange, "check", counting)
    logits, labels = make((2, 3, 9, 7, 5))
    CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5)(logits, labels)
    assert seen.all("voxel_stats") == ["native"] and seen.all("label_check") == ["fused"]
    assert calls == []
    labels_to_dtm(labels, 3)
    assert calls == ["labels"]


def _bad_label_cases(shape):
    """(labels, value placed) with one bad label in several places: the last voxel (a partial group of the vector
    pass), the first voxel of the second item, and a value beyond 32 bits."""
    B, C, *sp = shape
    _, labels = make(shape)
    cases = []
    for flat, value in ((labels.numel() - 1, C), (labels[0].numel(), -1), (labels.numel() // 3, 2 ** 40 + 1)):
        bad = labels.clone()
        bad.view(-1)[flat] = value
        cases.append((bad, value))
    return cases


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
@pytest.mark.parametrize("shape", [(2, 3, 9, 7, 5), (2, 5, 17, 19)])
def test_fused_label_check_rejects_every_bad_label(shape, dtype, seen):
    """One label outside [0, C) anywhere, of any integer dtype, raises the same error as a reduction would, from the
    statistics pass's own test (no ``aminmax``), for the forward alone and for a composite with an on-the-fly DTM."""
    C = shape[1]
    logits, _ = make(shape)
    for bad, value in _bad_label_cases(shape):
        if dtype == torch.uint8 and value < 0:
            continue  # uint8 holds no negative label; 255 below stands for a too-large one
        if dtype != torch.int64 and abs(value) > 2 ** 15:
            value = 255 if dtype == torch.uint8 else C + 100
            bad = bad.clamp(0, C - 1)
            bad.view(-1)[-1] = value
        bad = bad.to(dtype)
        lo, hi = min(int(bad.min()), 0), max(int(bad.max()), C - 1)
        for loss in (DiceCELoss(), CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5)):
            with pytest.raises(ValueError, match=rf"must lie in \[0, {C}\).*found values in \[{lo}, {hi}\]"):
                loss(logits, bad)
            assert seen.last("label_check") == "fused"
    good = make(shape)[1].to(dtype)
    assert torch.isfinite(DiceCELoss()(logits, good))  # the same pass lets valid labels through


def test_fused_label_check_holds_under_torch_compile():
    """A compiled loss step still rejects a bad label with the rule's error: the check is part of the host pass,
    which runs for real, not a reduction that tracing would have to skip."""
    loss = CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), 0.5)
    logits, labels = make((2, 3, 9, 8, 7))
    f = torch.compile(lambda z, t: loss(z, t), backend="aot_eager")
    assert torch.equal(f(logits, labels), loss(logits, labels))
    bad = labels.clone()
    bad[1, 8, 7, 6] = 5
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*found values in \[0, 5\]"):
        f(logits, bad)


def test_label_check_without_the_fused_pass(monkeypatch, seen):
    """Where the pass cannot test the rule (one sigmoid channel: labels 0 and 1 are valid but only 1 is a channel) or
    the PyTorch passes run, the range is checked by a reduction, with the same error."""
    logits = make((2, 1, 9, 7, 5))[0]
    binary = (make((2, 3, 9, 7, 5))[1] > 0).long()
    assert binary.max() == 1
    loss = DiceLoss(activation="sigmoid")
    assert torch.isfinite(loss(logits, binary)) and seen.last("label_check") == "aminmax"
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\).*found values in \[0, 2\]"):
        loss(logits, binary * 2)
    logits, labels = make((2, 3, 9, 7, 5))
    monkeypatch.setenv("FASTGSL_NATIVE_STATS", "0")
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*found values in \[1, 3\]"):
        DiceCELoss()(logits, labels + 1)
    assert seen.last("label_check") == "aminmax"
    assert torch.isfinite(DiceCELoss()(logits, labels)) and seen.last("voxel_stats") == "torch"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none present on this machine)")
def test_cuda_training_step_never_syncs_the_host(seen):
    """One forward + backward of every loss and of the composite, with the DTMs computed on the fly, and of the MONAI
    drop-in losses, under ``torch.cuda.set_sync_debug_mode("error")``: any host synchronisation on the loss path
    raises."""
    dev = torch.device("cuda")
    logits, labels = make((2, 3, 17, 15, 13))
    logits, labels = logits.to(dev), labels.to(dev)
    losses = [DiceLoss(), DiceCELoss(), CrossEntropyLoss(), GeneralizedDiceLoss(), BoundaryLoss(),
              HausdorffLoss(), HausdorffLoss(two_sided=True), GeneralizedSurfaceLoss(class_weights=[0.2, 0.3, 0.5]),
              CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(class_weights=[0.2, 0.3, 0.5]), 0.5)]
    losses = [loss.to(dev) for loss in losses]
    # the MONAI drop-in: (B, 1, *spatial) label maps one-hot encoded by the loss (its label check is device-side too)
    from fastgsl.monai import losses as FM
    monai_losses = [FM.DiceLoss(softmax=True, to_onehot_y=True), FM.DiceCELoss(softmax=True, to_onehot_y=True),
                    FM.GeneralizedDiceLoss(softmax=True, to_onehot_y=True),
                    FM.HausdorffDTLoss(softmax=True, to_onehot_y=True)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for loss in losses:
            z = logits.clone().requires_grad_()
            loss(z, labels).backward()
        for loss in monai_losses:
            z = logits.clone().requires_grad_()
            loss(z, labels[:, None]).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert set(seen.all("voxel_stats")) == {"triton"} and set(seen.all("edt")) == {"cupy"}
