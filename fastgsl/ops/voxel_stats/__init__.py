"""Per-(batch, class) voxel statistics: the one op every fastgsl loss is built on.

Every loss of the paper is a function of a handful of sums over voxels, taken per batch item and class
(``layout.py`` has the table).  So the forward of any loss, or of any composite of them, is one *statistics pass*
that writes a ``(B, C, K)`` tensor, followed by cheap arithmetic on that tiny tensor (which autograd
differentiates).  The backward is one *gradient pass*: given ``dL/dS`` of shape ``(B, C, K)`` it recomputes P
from the logits and writes ``dL/dlogits``.  Nothing of the size of the logits is stored between the two passes
except the inputs.

The op's files:

=====================  ==================================================================================
``layout.py``          the stats table, the argument codes; the one definition (the C++ header is generated)
``spec.py``            ``StatSpec``: which stats one pass computes, with which activation
``host.py``            the CPU passes: the C++ library (``kernels/voxel_stats_host.cpp``) and chunked PyTorch
``triton_passes.py``   the Triton kernels of both passes, their launch, and ``torch.ops.fastgsl.*`` registration
``function.py``        ``voxel_stats()``: input checks, dispatch, the ``autograd.Function``
=====================  ==================================================================================
"""
from fastgsl.ops.voxel_stats.function import VoxelStatsFunction, voxel_stats
from fastgsl.ops.voxel_stats.host import backward_host, compute_dtype, forward_host
from fastgsl.ops.voxel_stats.layout import (ACTIVATIONS, CE, D2, DP, DTM_STATS, HAUS, I, K, P_STATS, SP, SP2, ST,
                                            ST2, STAT_NAMES, SURF)
from fastgsl.ops.voxel_stats.spec import StatSpec

__all__ = ["I", "SP", "SP2", "ST", "ST2", "CE", "SURF", "D2", "DP", "HAUS", "K", "STAT_NAMES", "DTM_STATS",
           "P_STATS", "ACTIVATIONS", "StatSpec", "voxel_stats", "forward_host", "backward_host",
           "VoxelStatsFunction", "compute_dtype"]
