"""The ops over fastgsl's kernels: ``voxel_stats`` (the fused statistics and gradient passes every loss is built on,
registered as ``torch.ops.fastgsl.voxel_stats_fwd`` / ``voxel_stats_bwd``), ``edt`` (the exact batched EDT) and
``nearest`` (the k-d tree of the surface metrics)."""
