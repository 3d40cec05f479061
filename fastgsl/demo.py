"""A short demonstration of the loss API on generated volumes: ``python -m fastgsl.demo``.

Builds a batch of smooth 3-D label maps (a large organ and a small distant lesion), a noisy prediction of them,
and prints every loss with its forward + backward time on the current backend, the DTM computed on the fly.
"""
from __future__ import annotations

import argparse
import time

import torch


def phantom(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Integer labels (B, size, size, size): 0 background, 1 an ellipsoid organ, 2 a small lesion."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.linspace(-1, 1, size)
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    labels = torch.zeros(batch, size, size, size, dtype=torch.long)
    for b in range(batch):
        c = (torch.rand(3, generator=g) - 0.5) * 0.3
        r = 0.45 + 0.15 * torch.rand(3, generator=g)
        organ = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1
        lesion = (z - 0.75) ** 2 + (y + 0.7) ** 2 + (x - 0.7) ** 2 < 0.12 ** 2
        labels[b][organ] = 1
        labels[b][lesion] = 2
    return labels


def main(argv=None):
    from fastgsl import backend
    from fastgsl.dtm import labels_to_dtm
    from fastgsl.losses import (BoundaryLoss, CompositeLoss, CrossEntropyLoss, DiceCELoss, DiceLoss,
                                GeneralizedDiceLoss, GeneralizedSurfaceLoss, HausdorffLoss)
    from fastgsl.schedules import LinearSchedule
    from fastgsl.weights import class_weights, count_class_voxels

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)

    labels = phantom(args.batch, args.size).to(args.device)
    g = torch.Generator().manual_seed(1)
    onehot = torch.nn.functional.one_hot(labels.cpu(), 3).movedim(-1, 1).float()
    logits = (4 * onehot + torch.randn(onehot.shape, generator=g) * 2).to(args.device)
    w = class_weights(count_class_voxels(labels, 3))
    t0 = time.perf_counter()
    dtm = labels_to_dtm(labels, 3)
    t_dtm = time.perf_counter() - t0
    print(f"fastgsl demo: logits {tuple(logits.shape)} on {args.device}, backend "
          f"{backend.resolve(logits.device)}; class weights (eq. 13) {[round(v, 4) for v in w.tolist()]}")
    print(f"DTM of the batch ({args.batch}x3 maps): {t_dtm * 1e3:.1f} ms")
    schedule = LinearSchedule(100)
    losses = {
        "Dice": DiceLoss(), "Dice-CE": DiceCELoss(), "CE": CrossEntropyLoss(), "GDL": GeneralizedDiceLoss(),
        "Boundary": BoundaryLoss(), "Hausdorff": HausdorffLoss(), "GSL": GeneralizedSurfaceLoss(class_weights=w),
        "Dice-CE + GSL (epoch 50)": CompositeLoss(DiceCELoss(), GeneralizedSurfaceLoss(class_weights=w), schedule),
    }
    losses["Dice-CE + GSL (epoch 50)"].set_epoch(50)
    print(f"{'loss':<26}{'value':>12}{'fwd+bwd (ms)':>14}")
    for name, loss in losses.items():
        z = logits.clone().requires_grad_()
        loss(z, labels, dtm).backward()  # warm-up
        z.grad = None
        t0 = time.perf_counter()
        v = loss(z, labels, dtm)
        v.backward()
        if z.is_cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"{name:<26}{v.item():>12.5f}{dt * 1e3:>14.1f}")
    z = logits.clone().requires_grad_()
    t0 = time.perf_counter()
    GeneralizedSurfaceLoss(class_weights=w)(z, labels).backward()
    print(f"GSL with the DTM computed on the fly: {(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
