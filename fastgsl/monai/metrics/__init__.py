"""Drop-ins for ``monai.metrics``: ``from fastgsl.monai.metrics import HausdorffDistanceMetric`` (see
:mod:`fastgsl.monai`)."""
from fastgsl.monai.metrics.hausdorff_distance import HausdorffDistanceMetric, compute_hausdorff_distance
from fastgsl.monai.metrics.meandice import DiceMetric, compute_dice
from fastgsl.monai.metrics.surface_dice import SurfaceDiceMetric, compute_surface_dice
from fastgsl.monai.metrics.surface_distance import SurfaceDistanceMetric, compute_average_surface_distance

__all__ = ["compute_hausdorff_distance", "compute_average_surface_distance", "compute_surface_dice", "compute_dice",
           "HausdorffDistanceMetric", "SurfaceDistanceMetric", "SurfaceDiceMetric", "DiceMetric"]
