"""Segmentation losses of the Generalized Surface Loss paper, as ``nn.Module``s.

Every loss is called as ``loss(logits, target, dtm=None)`` with ``logits`` of shape ``(B, C, *spatial)``
(2 or 3 spatial dimensions) and ``target`` either integer labels ``(B, *spatial)`` / ``(B, 1, *spatial)`` or a
float one-hot / multi-label tensor ``(B, C, *spatial)``.  Losses that use a distance transform map compute it
from ``target`` (``fastgsl.dtm``) when ``dtm`` is None.  All of them are built on one fused statistics pass
(``fastgsl.ops.voxel_stats``); each module below holds the math of its loss.
"""
from fastgsl.losses.boundary import BoundaryLoss
from fastgsl.losses.composite import CompositeLoss
from fastgsl.losses.cross_entropy import CrossEntropyLoss
from fastgsl.losses.dice import DiceCELoss, DiceLoss
from fastgsl.losses.generalized_dice import GeneralizedDiceLoss
from fastgsl.losses.hausdorff import HausdorffLoss
from fastgsl.losses.surface import GeneralizedSurfaceLoss

__all__ = ["DiceLoss", "DiceCELoss", "CrossEntropyLoss", "GeneralizedDiceLoss", "BoundaryLoss", "HausdorffLoss",
           "GeneralizedSurfaceLoss", "CompositeLoss"]
