"""Segmentation metrics on the device, batched: Dice, Hausdorff (HD, HD-percentile), average surface distance, and
normalised surface Dice.

Every function takes ``pred`` and ``target`` either as binary masks ``(B, C, *spatial)`` (bool, or any numeric
dtype holding only 0 and 1) or, with ``num_classes``, as integer label maps ``(B, *spatial)`` / ``(B, 1, *spatial)``,
in 2-D or 3-D, and returns a ``(B, C')`` float32 tensor on the inputs' device, where ``C' = C - 1`` unless
``include_background=True``.  There is no per-item loop: the distance work of a whole batch is one call, either to
the batched exact EDT (:func:`fastgsl.ops.edt.distance_to_sites`, once per distinct spacing) or, on the CPU, to the
batched k-d tree search of :mod:`fastgsl.ops.nearest`, which measures only the query voxels.  On the CPU the
surfaces themselves are read in one native pass over the masks' rows (:func:`fastgsl.ops.nearest.surface_voxels`),
as lists of voxels, without full-size temporaries; a Hausdorff distance lets the tree stop a query once it cannot
raise the maximum, a percentile once it lies below a limit sampled under the order statistics the percentile reads
(checked afterwards), and surface Dice lets it stop at the first site within the tolerance (all stay exact); with a
tolerance of a few voxels surface Dice needs no tree at all, only the sites of the few voxel rows within it
(:func:`fastgsl.ops.nearest.within_rows`).

Distances (``FASTGSL_METRIC_DISTANCES``, :data:`DISTANCE_PATHS`): ``auto`` (default) takes the dense EDT on a GPU,
and on the CPU whichever of the two costs less by a simple model (the EDT: the cropped box volume; the tree:
searched voxels x log2 of the sites, or x the rows read for such a surface Dice); ``dense`` and ``sparse`` force
one.  Both give the same distances:
bit-identical with unit or dyadic spacing, otherwise up to the EDT's own float64 rounding.  Which one answered is
reported to :mod:`fastgsl.observe` as ``"metric_distances"`` (``"sparse"`` or ``"dense"``).

Conventions (``convention=``, :data:`METRIC_CONVENTIONS`), each checked in ``tests/test_metrics.py`` against the
installed peer:

``"monai"`` (default): MONAI 1.6 ``compute_hausdorff_distance`` (``monai/metrics/hausdorff_distance.py``),
    ``compute_average_surface_distance`` and ``compute_surface_dice(use_subvoxels=False)``.  MONAI's
    ``get_mask_edges`` (``monai/metrics/utils.py``) takes as the surface of a mask ``M`` its edge voxels
    ``E(M) = M xor erode(M)``, eroding with ``scipy.ndimage.binary_erosion`` at its defaults: the face-connected
    cross (4 neighbours in 2-D, 6 in 3-D) and ``border_value=0``, so that the outside of the image is background
    and object voxels on the image border are edges.  Its ``get_surface_distance`` measures, with spacing, the
    Euclidean distance ``d(x, Y)`` from the centre of voxel ``x`` to the nearest voxel centre of ``Y``.  The
    directed distance set from ``pred`` to ``target`` is ``D(P->T) = {d(x, E(T)) : x in E(P)}``.
``"paper"``: the paper's evaluation code, which uses SimpleITK.  HD(-percentile) runs over all foreground voxels:
    ``D(P->T) = {max(SignedMaurer_T(x), 0) : x in P}``, ``SignedMaurer_T`` being SimpleITK's
    ``SignedMaurerDistanceMapImageFilter`` of ``T`` (``useImageSpacing=True``, ``insideIsPositive=False``), so the
    clamped value is the distance to the nearest voxel of ``T`` (0 inside ``T``).  ASD and surface Dice run over
    the voxels of ``LabelContourImageFilter`` (``fullyConnected=False``: object voxels with a face neighbour in the
    background, where the outside of the image does not count as background):
    ``D(P->T) = {|SignedMaurer_T(x)| : x in LabelContour(P)}``; ``|SignedMaurer_T|`` is the distance to the sites of
    the Maurer map, the object voxels of ``T`` with a background voxel among their 8 (2-D) / 26 (3-D) neighbours.

Hausdorff distance (``hausdorff_distance``): ``max(Q_p(D(P->T)), Q_p(D(T->P)))``, or ``Q_p(D(P->T))`` alone with
``directed=True``.  ``Q_p`` is the maximum when ``percentile`` is None, otherwise the linear-interpolated quantile
of numpy's / torch's default method: with the set sorted as ``v_0 <= ... <= v_{n-1}``, ``r = p/100 * (n - 1)``,
``Q_p = v_floor(r) + (r - floor(r)) * (v_ceil(r) - v_floor(r))``.  The two order statistics are found by an exact
selection (:func:`segment_quantile`: per segment on the CPU, a batched radix selection on the float bits elsewhere; no
sort of the distance sets); ``r`` is evaluated in float64.  Note: MONAI treats ``percentile=0`` as "no percentile" and
returns the maximum; here 0 means the minimum.

Average surface distance (``average_surface_distance``): ``"monai"``, symmetric: the mean of the union (the
concatenation) of both directed sets, ``(sum D(P->T) + sum D(T->P)) / (|E(P)| + |E(T)|)``; ``"paper"``, symmetric:
the mean of the two directed means.  ``symmetric=False`` gives the directed mean of ``D(P->T)``.

Surface Dice (``surface_dice``): ``(|{d in D(P->T): d <= tau}| + |{d in D(T->P): d <= tau}|) / (|D(P->T)| +
|D(T->P)|)`` with the tolerance ``tau`` in physical units (MONAI ``compute_surface_dice`` with
``use_subvoxels=False``; DeepMind's surfel-area weighting is *not* reproduced).

Dice (``dice_score``): ``2 |P n T| / (|P| + |T|)``, as MONAI ``compute_dice`` and SimpleITK
``LabelOverlapMeasuresImageFilter``.

Empty masks (``empty=``, :data:`EMPTY_POLICIES`; the default is ``"nan"`` for ``"monai"`` and ``"paper"`` for
``"paper"``).  A mask is *absent* when it has no foreground voxel; for the ``"paper"`` ASD and surface Dice, which
run over contours, a full mask (no background voxel, hence no contour) is absent too.  Per (item, class):

* HD, HD-percentile and ASD (symmetric or directed, whichever side is absent): ``"nan"`` gives nan when both are
  absent and +inf when one is; ``"paper"`` gives 0 when both are absent and the image diagonal
  ``sqrt(sum_i (n_i * spacing_i)^2)`` (physical units, full image shape, as ``fastgsl.dtm``'s
  ``fill="diagonal"``) when one is.
* Surface Dice: ``"nan"``: nan when both are absent, 0 when one is (MONAI); ``"paper"``: 1 and 0.
* Dice: ``"nan"``: nan whenever the *target* is empty (MONAI ``compute_dice(ignore_empty=True)``);
  ``"paper"``: 1 when both are empty, 0 when one is.

Where the peers differ: with one mask empty and a percentile, MONAI returns nan (its ``get_surface_distance`` gives
all-inf distances, and ``torch.quantile`` interpolates ``inf - inf``) while fastgsl returns +inf, as for the plain
HD.  SimpleITK gives +-1.8e19 maps for an empty or full mask and an ``inf`` Dice for two empty masks; these never
reach a result, the policy above decides instead.  (A full mask is not absent for HD(-percentile) under
``"paper"``: its signed map is negative everywhere, clamped to 0, which SimpleITK reproduces.)

Spacing (``spacing=``): None (1), a number (isotropic), a sequence of ``spatial_dims`` numbers in tensor axis order
(per call, the rules of :func:`fastgsl.validation.check_spacing`), or a ``(B, spatial_dims)`` nested sequence /
array / tensor (per batch item, each row under the same rules).

Layout: :mod:`.inputs` (argument checks), :mod:`.morphology` (edges and contours), :mod:`.distances` (the directed
distance sets and the dense / sparse path), :mod:`.selection` (exact quantiles), :mod:`.policies` (conventions and
empty-mask policies), :mod:`.overlap` (Dice) and :mod:`.surface` (HD, ASD, surface Dice).
"""
from __future__ import annotations

from .distances import DISTANCE_PATHS
from .overlap import dice_score
from .policies import EMPTY_POLICIES, METRIC_CONVENTIONS
from .selection import segment_quantile
from .surface import average_surface_distance, hausdorff_distance, surface_dice

__all__ = ["dice_score", "hausdorff_distance", "average_surface_distance", "surface_dice", "segment_quantile",
           "METRIC_CONVENTIONS", "EMPTY_POLICIES", "DISTANCE_PATHS"]
