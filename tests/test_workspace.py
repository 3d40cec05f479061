"""fastgsl.ops.workspace: the recycled memory of large results (the logits' gradient of the host pass)."""
import pytest
import torch

from fastgsl import observe
from fastgsl.losses import CompositeLoss, DiceCELoss, GeneralizedSurfaceLoss
from fastgsl.ops import edt, workspace
from fastgsl.ops.voxel_stats import host

SMALL = 1 << 12  # a threshold the tests' small tensors pass


@pytest.fixture
def pool(monkeypatch):
    """An empty pool with a threshold of 4 KiB, emptied again afterwards."""
    monkeypatch.setattr(workspace, "RECYCLE_MIN_BYTES", SMALL)
    monkeypatch.delenv("FASTGSL_RECYCLE", raising=False)
    workspace._pool.clear()
    yield workspace._pool
    workspace._pool.clear()


def _in_pool(t: torch.Tensor, pool) -> bool:
    for block in pool:
        start = torch.frombuffer(block, dtype=torch.uint8, count=1).data_ptr()
        if start <= t.data_ptr() < start + len(block):
            return True
    return False


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_block_is_reused_only_once_nothing_holds_it(pool, dtype):
    shape = (2, 3, 1001)
    a = workspace.recycled_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.is_contiguous() and a.data_ptr() % 64 == 0
    assert _in_pool(a, pool) and len(pool) == 1
    where = a.data_ptr()
    b = workspace.recycled_empty(shape, dtype)  # a is alive: another block
    assert b.data_ptr() != where and len(pool) == 2
    view = a[1, 2:5]
    del a
    c = workspace.recycled_empty(shape, dtype)  # a's view still holds its block
    assert c.data_ptr() not in (where, b.data_ptr()) and len(pool) == 3
    del view
    d = workspace.recycled_empty(shape, dtype)  # now nothing does
    assert d.data_ptr() == where and len(pool) == 3
    del b, c
    workspace.release()  # frees the two unused blocks, keeps d's
    assert len(pool) == 1 and _in_pool(d, pool)


def test_other_devices_use_their_own_allocator(pool):
    t = workspace.recycled_empty((SMALL,), torch.float32, device="meta")
    assert t.device.type == "meta" and t.shape == (SMALL,) and not pool


def test_small_results_and_the_switch_use_ordinary_memory(pool, monkeypatch):
    assert not _in_pool(workspace.recycled_empty((SMALL // 4 - 1,), torch.float32), pool) and not pool
    assert _in_pool(workspace.recycled_empty((SMALL // 4,), torch.float32), pool)
    monkeypatch.setenv("FASTGSL_RECYCLE", "0")
    assert not _in_pool(workspace.recycled_empty((SMALL,), torch.float32), pool) and len(pool) == 1


def test_a_block_much_larger_than_the_request_is_not_used(pool):
    big = workspace.recycled_empty((4 * SMALL,), torch.float32)
    del big
    small = workspace.recycled_empty((SMALL // 4,), torch.float32)  # 4 KiB from a 64 KiB block: a new one
    assert len(pool) == 2 and _in_pool(small, pool)


def test_the_pool_is_bounded(pool):
    held = [workspace.recycled_empty((SMALL,), torch.float32) for _ in range(workspace._POOL_BLOCKS)]
    assert len(pool) == workspace._POOL_BLOCKS and all(_in_pool(t, pool) for t in held)
    extra = workspace.recycled_empty((SMALL,), torch.float32)  # every block in use: ordinary memory
    assert not _in_pool(extra, pool) and len(pool) == workspace._POOL_BLOCKS
    del held[0]
    other = workspace.recycled_empty((2 * SMALL,), torch.float32)  # the unused block makes room for a new one
    assert _in_pool(other, pool) and len(pool) == workspace._POOL_BLOCKS


def test_the_loss_gradient_is_recycled_and_a_kept_one_is_never_overwritten(pool, monkeypatch):
    if host.native_library() is None:
        pytest.skip("the C++ host library is not built on this machine (the PyTorch passes allocate their own)")
    g = torch.Generator().manual_seed(3)
    logits = torch.randn((2, 3, 17, 15, 13), generator=g).requires_grad_()
    labels = torch.randint(0, 3, (2, 17, 15, 13), generator=g)
    dtm = torch.randn(logits.shape, generator=g) * 10  # given, so that only the gradients come from the pool
    loss = CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(class_weights=[0.2, 0.3, 0.5]), 0.5)

    def step():
        logits.grad = None
        with observe.engines() as seen:
            loss(logits, labels, dtm).backward()
        assert seen.last("voxel_stats") == "native"
        return logits.grad

    first = step()
    assert _in_pool(first, pool)
    kept = first.clone()
    second = step()  # `first` is still held: the pass writes elsewhere
    assert second.data_ptr() != first.data_ptr() and torch.equal(first, kept) and torch.equal(second, kept)
    del first, second  # logits.grad still holds the second: step() drops it
    third = step()  # nothing holds the two blocks any more: one of them is written again, none is added
    assert _in_pool(third, pool) and len(pool) == 2 and torch.equal(third, kept)
    monkeypatch.setenv("FASTGSL_RECYCLE", "0")
    plain = step()
    assert not _in_pool(plain, pool) and torch.equal(plain, kept)


def test_the_host_edt_result_is_recycled(pool, monkeypatch):
    if edt.engine_name("cpu") != "host":
        pytest.skip("the host EDT library is not built on this machine (the scipy fallback allocates its own)")
    labels = torch.randint(0, 3, (2, 17, 15, 13), generator=torch.Generator().manual_seed(4))
    first = edt.labels_dtm(labels, 3)
    assert _in_pool(first, pool)
    second = edt.labels_dtm(labels, 3)  # first is held: another block, the same values
    assert second.data_ptr() != first.data_ptr() and torch.equal(first, second) and len(pool) == 2
    monkeypatch.setenv("FASTGSL_RECYCLE", "0")
    plain = edt.labels_dtm(labels, 3)
    assert not _in_pool(plain, pool) and torch.equal(plain, first)
