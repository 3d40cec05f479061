"""Run inside the nnU-Net environment (tests/test_nnunet.py launches it): fastgsl.nnunet's losses against
nnunetv2 2.8.1's own DC_and_CE_loss / DC_and_BCE_loss and against the naive formulas on SimpleITK's DTM of each
deep-supervision scale's target."""
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from fastgsl.nnunet.loss import NNUNetLoss
from fastgsl.schedules import LinearSchedule
from fastgsl.weights import class_weights

torch.set_default_dtype(torch.float32)


def nnunet_ds_weights(n):
    # the weights nnUNetTrainer._build_loss gives n outputs (not DDP)
    w = np.array([1 / 2 ** i for i in range(n)])
    w[-1] = 0
    return list(w / w.sum())


def ds_scales(n, nd):
    return [[1 / 2 ** i] * nd for i in range(n)]


def downsample(seg, scales):
    # nnU-Net's DownsampleSegForDSTransform: nearest-exact interpolation to round(shape * scale)
    out = []
    for s in scales:
        shape = [round(a * b) for a, b in zip(seg.shape[2:], s)]
        out.append(F.interpolate(seg.float(), shape, mode="nearest-exact").to(seg.dtype))
    return out


def outputs_for(targets, C, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((t.shape[0], C, *t.shape[2:]), generator=g, dtype=torch.float32).requires_grad_()
            for t in targets]


def random_labels(B, C, shape, seed):
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, C, (B, 1, *shape), generator=g)
    lab[0, 0, :2] = C - 1  # a block, so that some boundaries survive the coarse scales
    return lab.to(torch.int16)


def regions_of(lab):
    # overlapping BraTS-like regions: {1, 2}, {2}, {1} -> as nnU-Net's ConvertSegmentationToRegionsTransform
    return torch.cat([(lab == 1) | (lab == 2), lab == 2, lab == 1], 1).to(torch.uint8)


CASES = [(2, 3, (13, 12, 9)), (2, 2, (16, 10, 8)), (3, 5, (12, 14, 10)), (2, 3, (15, 17))]


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("B,C,shape", CASES)
def test_fast_dice_ce_equals_nnunet(B, C, shape, batch_dice):
    nd, n = len(shape), 4
    lab = random_labels(B, C, shape, 0)
    targets = downsample(lab, ds_scales(n, nd))
    ref = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False,
                                                 "ddp": False}, {}, weight_ce=1, weight_dice=1,
                                                dice_class=MemoryEfficientSoftDiceLoss), nnunet_ds_weights(n))
    ours = NNUNetLoss(num_classes=C, spacing=[1.0] * nd, ds_scales=ds_scales(n, nd), ds_weights=nnunet_ds_weights(n),
                      batch_dice=batch_dice)
    out_a, out_b = outputs_for(targets, C, 1), outputs_for(targets, C, 1)
    la, lb = ref(out_a, targets), ours(out_b, targets)
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-6)
    (la).backward()
    (lb).backward()
    for a, b, w in zip(out_a, out_b, nnunet_ds_weights(n)):
        if w == 0:
            assert b.grad is None or float(b.grad.abs().max()) == 0.0
            continue
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("shape", [(13, 12, 9), (15, 17)])
def test_fast_dice_ce_regions_equals_nnunet(shape, batch_dice):
    nd, n, B = len(shape), 3, 2
    targets = [regions_of(t) for t in downsample(random_labels(B, 3, shape, 2), ds_scales(n, nd))]
    ref = DeepSupervisionWrapper(DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5,
                                                      "ddp": False}, dice_class=MemoryEfficientSoftDiceLoss),
                                 nnunet_ds_weights(n))
    ours = NNUNetLoss(num_classes=3, spacing=[1.0] * nd, ds_scales=ds_scales(n, nd), ds_weights=nnunet_ds_weights(n),
                      batch_dice=batch_dice, regions=True)
    out_a, out_b = outputs_for(targets, 3, 3), outputs_for(targets, 3, 3)
    la, lb = ref(out_a, targets), ours(out_b, targets)
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-6)
    la.backward()
    lb.backward()
    torch.testing.assert_close(out_b[0].grad, out_a[0].grad, rtol=1e-4, atol=1e-8)


def sitk_dtm(mask: np.ndarray, spacing) -> np.ndarray:
    """The paper's DTM (SimpleITK signed Maurer, image spacing), with fastgsl's documented fill for an empty or full
    mask: + / - the image diagonal in physical units."""
    if not mask.any() or mask.all():
        diag = math.sqrt(sum((n * s) ** 2 for n, s in zip(mask.shape, spacing)))
        return np.full(mask.shape, diag if not mask.any() else -diag, np.float64)
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK's spacing is in x, y, z order
    d = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayFromImage(d).astype(np.float64)


def naive_boundary(kind, logits, target_onehot, spacing, w):
    """Eq. 12 (GSL, weights w, per sample then batch mean), eq. 9 (BL) or eq. 7 (HL, one- / two-sided), naive."""
    x = logits.double()
    p = torch.softmax(x, 1)
    t = target_onehot.double()
    d = torch.tensor(np.stack([[sitk_dtm(t[b, c].numpy() > 0.5, spacing) for c in range(t.shape[1])]
                               for b in range(t.shape[0])]))
    if kind == "gsl":
        num = ((d * (1 - t - p)) ** 2).flatten(2).sum(2)
        den = (d ** 2).flatten(2).sum(2)
        wt = torch.as_tensor(w, dtype=torch.float64)
        return (1 - (num * wt).sum(1) / ((den * wt).sum(1) + 1e-6)).mean()
    if kind == "bl":
        return (d * p).mean()
    if kind == "hl":
        return ((t - p) ** 2 * d ** 2).mean()
    if kind == "hl2":
        dp = torch.tensor(np.stack([[sitk_dtm((p[b, c] > 0.5).detach().numpy(), spacing)
                                     for c in range(t.shape[1])] for b in range(t.shape[0])]))
        return ((t - p) ** 2 * (d ** 2 + dp ** 2)).mean()
    raise ValueError(kind)


def nnunet_region(logits, target, batch_dice):
    return DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          dice_class=MemoryEfficientSoftDiceLoss)(logits, target)


@pytest.mark.parametrize("kind", ["gsl", "bl", "hl", "hl2"])
@pytest.mark.parametrize("B,C,shape,spacing", [(2, 3, (16, 12, 10), (2.0, 0.8, 1.0)), (2, 5, (14, 18), (0.7, 1.3))])
def test_boundary_terms_equal_naive_on_each_scale(kind, B, C, shape, spacing):
    nd, n = len(shape), 3
    # anisotropic scales, as nnU-Net plans for anisotropic data: the GSL is invariant to a uniform scaling of
    # the DTM, so only these make its per-scale spacing observable
    scales = [[1.0] * nd, [1.0] + [0.5] * (nd - 1), [0.5] + [0.25] * (nd - 1)]
    weights = nnunet_ds_weights(n)
    weights[-1] = 0.2  # make the coarsest scale count, so its DTM and spacing are tested too
    lab = random_labels(B, C, shape, 4)
    targets = downsample(lab, scales)
    cw = class_weights(torch.bincount(lab.flatten().long(), minlength=C) + 1) if kind == "gsl" else None
    loss = NNUNetLoss(num_classes=C, spacing=spacing, ds_scales=scales, ds_weights=weights, boundary=kind,
                      schedule=LinearSchedule(4), class_weights=cw)
    alpha = loss.set_epoch(1)
    assert alpha == 0.75 and loss.alpha == 0.75
    outs = outputs_for(targets, C, 5)
    got = loss(outs, targets)
    got.backward()
    outs_ref = [o.detach().double().requires_grad_() for o in outs]
    expected = 0.0
    for s, (o, t, w) in enumerate(zip(outs_ref, targets, weights)):
        sp = [a / f for a, f in zip(spacing, scales[s])]
        onehot = F.one_hot(t[:, 0].long(), C).movedim(-1, 1).bool()
        b = naive_boundary(kind, o, onehot, sp, None if cw is None else cw.numpy())
        expected = expected + w * (alpha * nnunet_region(o, t, False) + (1 - alpha) * b)
    expected.backward()
    torch.testing.assert_close(got.double(), expected, rtol=2e-5, atol=1e-6)
    for o, r in zip(outs, outs_ref):
        torch.testing.assert_close(o.grad.double(), r.grad, rtol=2e-4, atol=1e-7)
    # the same loss with the full-resolution spacing at every scale is a different number: the check can fail
    wrong = NNUNetLoss(num_classes=C, spacing=spacing, ds_scales=[[1.0] * nd] * n, ds_weights=weights,
                       boundary=kind, schedule=LinearSchedule(4), class_weights=cw)
    wrong.set_epoch(1)
    assert not torch.allclose(wrong([o.detach() for o in outs], targets).double(), expected.detach(), rtol=1e-4)


def test_regions_boundary_uses_sigmoid_and_region_targets():
    shape, spacing, n = (14, 12, 10), (1.5, 1.0, 1.0), 2
    scales = ds_scales(n, 3)
    targets = [regions_of(t) for t in downsample(random_labels(2, 3, shape, 6), scales)]
    loss = NNUNetLoss(num_classes=3, spacing=spacing, ds_scales=scales, ds_weights=[0.6, 0.4], boundary="bl",
                      schedule=LinearSchedule(2), regions=True)
    loss.set_epoch(1)  # alpha = 0.5
    outs = outputs_for(targets, 3, 7)
    got = loss(outs, targets)
    expected = 0.0
    for s, (o, t, w) in enumerate(zip(outs, targets, [0.6, 0.4])):
        sp = [a / f for a, f in zip(spacing, scales[s])]
        p = torch.sigmoid(o.double())
        d = torch.tensor(np.stack([[sitk_dtm(t[b, c].numpy() > 0, sp) for c in range(3)] for b in range(2)]))
        reg = DC_and_BCE_loss({}, {"batch_dice": False, "do_bg": True, "smooth": 1e-5, "ddp": False},
                              dice_class=MemoryEfficientSoftDiceLoss)(o.double(), t)
        expected = expected + w * (0.5 * reg + 0.5 * (d * p).mean())
    torch.testing.assert_close(got.double(), expected.detach(), rtol=2e-5, atol=1e-6)


def test_fp16_logits_under_amp_dtype():
    # nnU-Net's AMP hands fp16 (CUDA) logits; on the CPU the same dtype goes through the host path
    lab = random_labels(2, 3, (12, 10, 8), 8)
    targets = downsample(lab, ds_scales(2, 3))
    loss = NNUNetLoss(num_classes=3, spacing=(1, 1, 1), ds_scales=ds_scales(2, 3), ds_weights=[1.0, 0.0],
                      boundary="gsl", schedule=LinearSchedule(3))
    outs = [o.detach().half().requires_grad_() for o in outputs_for(targets, 3, 9)]
    ref = NNUNetLoss(num_classes=3, spacing=(1, 1, 1), ds_scales=ds_scales(2, 3), ds_weights=[1.0, 0.0],
                     boundary="gsl", schedule=LinearSchedule(3))([o.detach().float() for o in outs], targets)
    got = loss(outs, targets)
    got.backward()
    assert outs[0].grad.dtype == torch.float16 and torch.isfinite(outs[0].grad).all()
    torch.testing.assert_close(got.float(), ref, rtol=1e-3, atol=1e-3)


def test_wrong_number_of_outputs_is_an_error():
    loss = NNUNetLoss(num_classes=3, spacing=(1, 1, 1), ds_scales=ds_scales(3, 3), ds_weights=nnunet_ds_weights(3))
    lab = random_labels(1, 3, (8, 8, 8), 0)
    with pytest.raises(ValueError, match="one per deep-supervision scale"):
        loss(outputs_for([lab], 3, 0), [lab])


def _ddp_rank(rank, world, init_file, result_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        lab = random_labels(2 * world, 3, (12, 10, 8), 11)[2 * rank: 2 * rank + 2]
        scales = ds_scales(2, 3)
        targets = downsample(lab, scales)
        ref = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": True},
                                                    {}, dice_class=MemoryEfficientSoftDiceLoss), [0.7, 0.3])
        ours = NNUNetLoss(num_classes=3, spacing=(1, 1, 1), ds_scales=scales, ds_weights=[0.7, 0.3],
                          batch_dice=True, ddp=True, boundary="gsl", schedule=LinearSchedule(2))
        oa, ob = outputs_for(targets, 3, 12 + rank), outputs_for(targets, 3, 12 + rank)
        la, lb = ref(oa, targets), ours(ob, targets)  # alpha = 1 at epoch 0: the region term alone
        la.backward()
        lb.backward()
        torch.save({"a": la.detach(), "b": lb.detach(), "ga": oa[0].grad, "gb": ob[0].grad}, f"{result_file}{rank}")
    finally:
        dist.destroy_process_group()


def test_ddp_batch_dice_all_gathers_like_nnunet(tmp_path):
    import torch.multiprocessing as mp

    world = 2
    mp.spawn(_ddp_rank, args=(world, str(tmp_path / "init"), str(tmp_path / "r")), nprocs=world, join=True)
    for rank in range(world):
        r = torch.load(tmp_path / f"r{rank}")
        torch.testing.assert_close(r["b"], r["a"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["gb"], r["ga"], rtol=1e-4, atol=1e-8)
