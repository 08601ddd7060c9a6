"""Surface distances in millimetres between two binary masks: ASSD, Hausdorff distance and HD95.

Libraries disagree on what a surface is and on HD95; this module follows MONAI
(`monai.metrics.compute_hausdorff_distance` / `compute_average_surface_distance` on CPU, without
sub-voxel edges), and the tests check it against MONAI:

* **Surface** of a mask: its voxels with at least one of their 6 face neighbours outside the mask,
  i.e. ``mask XOR binary_erosion(mask)`` with the 3-D cross, the outside of the volume counting as
  background (MONAI's `get_mask_edges`). A one-voxel lesion is its own surface.
* **Distance** from a surface voxel of one mask to the other mask: the Euclidean distance in mm
  between voxel centres (index times spacing) to the nearest *surface* voxel of the other mask.
* **ASSD**: the mean of all distances of both directions pooled,
  ``(sum_{p in dP} d(p, dG) + sum_{g in dG} d(g, dP)) / (|dP| + |dG|)`` (Heimann et al. 2009; the
  ISBI 2015 "SD").
* **HD**: the largest distance in either direction.
* **HD95**: the larger of the two *directed* 95th percentiles, each with linear interpolation between
  order statistics (numpy's default, as torch.quantile). MedPy instead pools both directions before
  taking the percentile, which can give a smaller value.

Empty masks: both empty gives 0 mm for all three (identical, empty surfaces); one side empty has no
defined distance, so the values are ``None`` and :func:`empty_surface_reason` says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation._masks import check_spacing_mm, require_bool_mask, require_mask_pair

__all__ = [
    "HD_PERCENTILE",
    "surface_voxels",
    "directed_surface_distances",
    "surface_distance_metrics",
    "empty_surface_reason",
]

#: Percentile of the robust Hausdorff distance reported as ``hd95_mm``.
HD_PERCENTILE = 95.0


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boolean map of the mask voxels that touch the background through a face (see module docstring)."""
    mask = require_bool_mask(mask, "mask")
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (slice(None, -2), slice(2, None)):
            neighbour = [slice(1, -1)] * 3
            neighbour[axis] = shift
            interior &= padded[tuple(neighbour)]
    return mask & ~interior


def directed_surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of `pred` to `gt`'s surface, and from `gt`'s to `pred`'s.

    Args:
        pred: boolean (Z, Y, X) mask.
        gt: boolean (Z, Y, X) mask on the same grid.
        spacing: voxel size in mm along (Z, Y, X).

    Returns:
        Two float64 arrays (pred -> gt, gt -> pred); both are empty if either mask is empty.
    """
    pred, gt = require_mask_pair(pred, gt)
    spacing_mm = check_spacing_mm(spacing)
    pred_points, gt_points = (_surface_points(m, spacing_mm) for m in _crop_to_union(pred, gt))
    if len(pred_points) == 0 or len(gt_points) == 0:
        return np.empty(0), np.empty(0)
    pred_to_gt = cKDTree(gt_points).query(pred_points, k=1)[0]
    gt_to_pred = cKDTree(pred_points).query(gt_points, k=1)[0]
    return pred_to_gt, gt_to_pred


def surface_distance_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], *, percentile: float = HD_PERCENTILE
) -> dict[str, float | None]:
    """ASSD, Hausdorff distance and its `percentile` (default 95) in mm; ``None`` if exactly one mask is empty.

    Returns:
        ``{"assd_mm": ..., "hd_mm": ..., "hd95_mm": ...}`` (the last key keeps its name for any percentile).
    """
    if not 0.0 <= percentile <= 100.0:
        raise InvalidInputError(f"surface-distance percentile must be in [0, 100], got {percentile}")
    pred, gt = require_mask_pair(pred, gt)
    check_spacing_mm(spacing)
    pred_empty, gt_empty = not pred.any(), not gt.any()
    if pred_empty and gt_empty:
        return {"assd_mm": 0.0, "hd_mm": 0.0, "hd95_mm": 0.0}
    if pred_empty or gt_empty:
        return {"assd_mm": None, "hd_mm": None, "hd95_mm": None}
    pred_to_gt, gt_to_pred = directed_surface_distances(pred, gt, spacing)
    pooled_sum = float(pred_to_gt.sum() + gt_to_pred.sum())
    return {
        "assd_mm": pooled_sum / (pred_to_gt.size + gt_to_pred.size),
        "hd_mm": float(max(pred_to_gt.max(), gt_to_pred.max())),
        "hd95_mm": float(max(np.percentile(pred_to_gt, percentile), np.percentile(gt_to_pred, percentile))),
    }


def empty_surface_reason(pred_empty: bool, gt_empty: bool) -> str | None:
    """Why the surface distances are ``None`` for these emptiness flags, or ``None`` if they are defined."""
    if pred_empty and not gt_empty:
        return "prediction is empty: no surface to measure distances to"
    if gt_empty and not pred_empty:
        return "reference is empty: no surface to measure distances to"
    return None


def _crop_to_union(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to the bounding box of their union (distances are translation-invariant)."""
    union = pred | gt
    box = []
    for axis in range(3):
        hits = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(hits[0], hits[-1] + 1) if hits.size else slice(0, 0))
    return pred[tuple(box)], gt[tuple(box)]


def _surface_points(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Surface voxel centres in mm (relative to the crop's origin), shape (N, 3)."""
    return np.argwhere(surface_voxels(mask)) * spacing
