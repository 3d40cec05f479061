"""nnU-Net's 3-D U-Net (MONAI ``DynUNet``), its topology planned from the patch size and the voxel spacing.

The plan follows nnU-Net's rule (Isensee et al., 2021, "nnU-Net", Nat. Methods, section "network topology"):
at each level, an axis is downsampled (stride 2) only while its spacing is at most twice the finest spacing
and its feature map stays at least ``2 * min_size`` voxels; an axis whose spacing is still more than twice the
finest gets a kernel of 1 instead of 3 (so anisotropic axes are first left alone, until downsampling the
others has caught their spacing up).  Downsampling stops when no axis can be halved or after ``max_levels``.
The number of filters doubles per level from ``filters`` and is capped at ``max_filters`` (nnU-Net: 32 and 320).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class NetworkPlan:
    kernels: list
    strides: list
    filters: list

    def describe(self) -> str:
        return "; ".join(f"k{tuple(k)} s{tuple(s)} f{f}" for k, s, f in zip(self.kernels, self.strides, self.filters))


def plan_network(patch_size, spacing, *, min_size: int = 4, max_levels: int = 5, filters: int = 32,
                 max_filters: int = 320) -> NetworkPlan:
    """Kernel sizes, strides and filters of each level for ``patch_size`` (voxels) at ``spacing`` (mm)."""
    if len(patch_size) != len(spacing):
        raise ValueError(f"patch size {tuple(patch_size)} and spacing {tuple(spacing)} differ in length")
    if any(p < 1 for p in patch_size) or any(s <= 0 for s in spacing):
        raise ValueError(f"patch size and spacing must be positive, got {tuple(patch_size)} and {tuple(spacing)}")
    sizes = [float(p) for p in patch_size]
    sp = [float(s) for s in spacing]
    kernels, strides = [], [[1] * len(sizes)]
    while len(strides) <= max_levels:
        finest = min(sp)
        stride = [2 if s <= 2 * finest and n >= 2 * min_size else 1 for s, n in zip(sp, sizes)]
        kernel = [3 if s <= 2 * finest else 1 for s in sp]
        if all(st == 1 for st in stride):
            break
        kernels.append(kernel)
        strides.append(stride)
        sizes = [n / st for n, st in zip(sizes, stride)]
        sp = [s * st for s, st in zip(sp, stride)]
    kernels.append([3] * len(sizes))
    for n, p in zip(patch_size, strides_product(strides)):
        if n % p:
            raise ValueError(f"patch size {tuple(patch_size)} is not divisible by the network's total stride "
                             f"{tuple(strides_product(strides))}; choose multiples of it")
    nfilt = [min(filters * 2 ** i, max_filters) for i in range(len(kernels))]
    return NetworkPlan(kernels, strides, nfilt)


def strides_product(strides) -> list:
    out = [1] * len(strides[0])
    for s in strides:
        out = [a * b for a, b in zip(out, s)]
    return out


def build_model(plan: NetworkPlan, in_channels: int, out_channels: int, deep_supervision: bool = False) -> nn.Module:
    """MONAI ``DynUNet`` with nnU-Net's choices: instance norm, leaky ReLU, residual-free conv blocks.

    With ``deep_supervision`` it returns, in training mode, ``(B, 1 + S, C, *patch)``: the full-resolution
    output and ``S`` lower-resolution heads upsampled to the patch size (MONAI's layout).
    """
    from monai.networks.nets import DynUNet
    levels = len(plan.kernels)
    return DynUNet(spatial_dims=len(plan.kernels[0]), in_channels=in_channels, out_channels=out_channels,
                   kernel_size=plan.kernels, strides=plan.strides, upsample_kernel_size=plan.strides[1:],
                   filters=plan.filters, norm_name=("INSTANCE", {"affine": True}),
                   act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
                   deep_supervision=deep_supervision, deep_supr_num=max(1, min(2, levels - 2)),
                   res_block=False)


def deep_supervision_weights(num_outputs: int) -> list:
    """nnU-Net's weights ``1 / 2^i`` for output ``i``, normalised to sum 1.  (nnU-Net also zeroes its lowest
    head; MONAI returns only the heads asked for, so every one of them is used here, which also keeps DDP free
    of unused parameters.)"""
    w = [0.5 ** i for i in range(num_outputs)]
    s = sum(w)
    return [x / s for x in w]
