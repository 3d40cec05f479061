"""Alpha schedules (paper eqs. 14-16) and class weights (eqs. 13, 17)."""
import math

import pytest
import torch

from fastgsl.schedules import ConstantSchedule, CosineSchedule, LinearSchedule, StepSchedule
from fastgsl.weights import class_weights, count_class_voxels


def test_linear_is_eq14():
    s = LinearSchedule(200)
    assert [s(t) for t in (0, 50, 100, 200)] == [1.0, 0.75, 0.5, 0.0]
    assert s(250) == 0.0


def test_step_is_eq15():
    s = StepSchedule(100, step_length=25)  # N_h = 4
    assert [s(t) for t in (0, 24, 25, 49, 50, 99, 100)] == [1.0, 1.0, 0.75, 0.75, 0.5, 0.25, 0.0]
    s = StepSchedule(12, step_length=5)  # N_h = floor(12 / 5) = 2
    assert [s(t) for t in (0, 4, 5, 9, 10, 12)] == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]


def test_cosine_is_eq16():
    s = CosineSchedule(80)
    for t in (0, 13, 40, 79, 80):
        assert s(t) == pytest.approx(0.5 * (1 + math.cos(math.pi * t / 80)), abs=1e-15)
    assert s(80) == pytest.approx(0.0, abs=1e-15)


def test_warmup_holds_alpha_then_decays_to_zero():
    s = LinearSchedule(25, warmup_epochs=5)
    assert [s(t) for t in range(6)] == [1.0] * 6
    assert s(15) == pytest.approx(0.5) and s(25) == 0.0
    c = CosineSchedule(25, warmup_epochs=5)
    assert c(4) == 1.0 and c(25) == pytest.approx(0.0, abs=1e-15)
    st = StepSchedule(25, step_length=5, warmup_epochs=5)
    assert st(4) == 1.0 and st(10) == 0.75 and st(25) == 0.0


def test_constant():
    assert ConstantSchedule(0.3)(0) == ConstantSchedule(0.3)(1000) == 0.3


@pytest.mark.parametrize("make", [
    lambda: LinearSchedule(0), lambda: LinearSchedule(-3), lambda: LinearSchedule(10.5),
    lambda: LinearSchedule(10, warmup_epochs=10), lambda: CosineSchedule(10, warmup_epochs=-1),
    lambda: StepSchedule(10, step_length=0), lambda: StepSchedule(10, step_length=11),
    lambda: ConstantSchedule(1.5), lambda: ConstantSchedule(-0.1), lambda: LinearSchedule(True),
])
def test_invalid_schedule_arguments(make):
    with pytest.raises(ValueError):
        make()


def test_negative_epoch_is_an_error():
    with pytest.raises(ValueError, match="epoch"):
        LinearSchedule(10)(-1)


def test_composite_set_epoch_uses_schedule():
    from fastgsl.losses import CompositeLoss, DiceCELoss, GeneralizedSurfaceLoss
    loss = CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), StepSchedule(10, 5))
    assert loss.alpha == 1.0
    assert loss.set_epoch(5) == 0.5 and loss.alpha == 0.5
    with pytest.raises(TypeError):
        CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(), "linear")


def test_class_weights_eq13_and_eq17():
    n = torch.tensor([1e7, 2e5, 3e3])
    w = class_weights(n)
    inv = 1 / n.double()
    torch.testing.assert_close(w, inv / inv.sum())
    assert w.sum().item() == pytest.approx(1.0)
    w2 = class_weights(n, p=2.0)
    torch.testing.assert_close(w2, inv ** 2 / (inv ** 2).sum())
    # huge counts and powers stay finite
    assert bool(torch.isfinite(class_weights([1e30, 1.0], p=20)).all())


@pytest.mark.parametrize("bad", [[10, 0, 5], [10, -2, 5], [], [1.0, float("nan")]])
def test_class_weights_reject_bad_counts(bad):
    with pytest.raises(ValueError):
        class_weights(bad)


def test_count_class_voxels_over_a_dataset():
    a = torch.tensor([[0, 1, 1], [2, 2, 2]])
    b = torch.tensor([0, 0, 1, 2])
    assert count_class_voxels([a, b], 4).tolist() == [3, 3, 4, 0]
    assert count_class_voxels(a, 3).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        count_class_voxels(torch.tensor([0, 3]), 3)
    with pytest.raises(TypeError):
        count_class_voxels(torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(RuntimeError, match="process group"):
        count_class_voxels(a, 3, all_reduce=True)


def test_count_class_voxels_all_reduce_gloo(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_worker, args=(str(tmp_path / "store"),), nprocs=2, join=True)


def _worker(rank, path):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    try:
        counts = count_class_voxels(torch.full((5,), rank, dtype=torch.long), 2, all_reduce=True)
        assert counts.tolist() == [5, 5], counts
    finally:
        dist.destroy_process_group()
