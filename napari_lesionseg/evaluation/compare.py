"""Compare the fusion modes of one run: where they disagree, their weights, their metrics (Sec. III.C).

One inference run fuses the same patch predictions with several modes (`InferenceResult.probabilities`),
so tiling, uniform averaging and B-spline voting can be compared without a second network run:

* :func:`disagreement`: the per-voxel spread (max - min) of the fused probabilities; tiling's seams
  between Voronoi cells show up as planes of high spread.
* :func:`mask_disagreement`: the voxels whose lesion/background call depends on the mode.
* :func:`mode_metrics`: `metrics.compute_metrics` of each mode's mask against a reference mask.
* :func:`weight_sum`: the per-voxel sum of a mode's fusion weights over a whole grid (what a
  complete run accumulates), also for modes a run did not fuse.

Example:
    >>> spread = disagreement(result.probabilities)          # doctest: +SKIP
    >>> table = mode_metrics(result.probabilities, gt, threshold=0.5, spacing=(1, 1, 1))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from napari_lesionseg.engine.fusion import FusionAccumulator, check_modes
from napari_lesionseg.engine.patches import PatchGrid
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation.metrics import as_binary_mask, compute_metrics

__all__ = ["COMPARED_MODES", "central_patch", "disagreement", "mask_disagreement", "mode_metrics", "weight_sum"]

#: The modes the paper compares (Sec. III.C): plain tiling, uniform averaging, B-spline voting.
COMPARED_MODES: tuple[str, ...] = ("tiling", "uniform", "spline")
#: Patches added to the accumulator at once by `weight_sum` (bounds its temporary memory).
_WEIGHT_BATCH = 16


def disagreement(probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-voxel spread (max - min) of the fused probabilities of several modes, float32 in [0, 1].

    Args:
        probabilities: fused ``(Z, Y, X)`` probability per mode, all of one shape.
    """
    stack = _stacked(probabilities)
    return (stack.max(axis=0) - stack.min(axis=0)).astype(np.float32)


def mask_disagreement(probabilities: Mapping[str, np.ndarray], threshold: float) -> np.ndarray:
    """Boolean ``(Z, Y, X)``: voxels that some modes call lesion (``p >= threshold``) and others not."""
    masks = _stacked(probabilities) >= threshold
    return masks.any(axis=0) & ~masks.all(axis=0)


def mode_metrics(
    probabilities: Mapping[str, np.ndarray],
    reference: np.ndarray,
    *,
    threshold: float,
    spacing: Sequence[float],
    beta: float = 2.0,
) -> dict[str, dict[str, Any]]:
    """`compute_metrics` of each mode's mask (``p >= threshold``) against `reference`, per mode.

    Args:
        probabilities: fused ``(Z, Y, X)`` probability per mode.
        reference: the reference lesion mask (bool or 0/1) on the same grid.
        threshold: probability at or above which a voxel is lesion.
        spacing: voxel size in mm along (Z, Y, X).
        beta: the beta of the ``fbeta`` key.

    Returns:
        ``{mode: metrics}`` in the order of `probabilities` (keys of `metrics.METRIC_KEYS`).
    """
    stack = _stacked(probabilities)
    reference = as_binary_mask(reference, name="reference mask")
    if reference.shape != stack.shape[1:]:
        raise InvalidInputError(
            f"the reference mask has shape {reference.shape} but the fused probabilities have "
            f"{stack.shape[1:]}: give the reference of this subject, on the grid of the images"
        )
    return {
        mode: compute_metrics(prob >= threshold, reference, spacing=spacing, prob=prob, beta=beta)
        for mode, prob in zip(probabilities, stack)
    }


def weight_sum(grid: PatchGrid, mode: str) -> np.ndarray:
    """Per-voxel sum of `mode`'s fusion weights over every patch of `grid`, float32 ``(Z, Y, X)``.

    Equals `InferenceResult.weight_sums[mode]` of a complete run: the patch count for ``"uniform"``,
    ones for ``"tiling"`` (each voxel belongs to one Voronoi cell), smooth sums for the kernels.
    """
    (mode,) = check_modes((mode,))
    accumulator = FusionAccumulator(grid, (mode,))
    for start in range(0, len(grid), _WEIGHT_BATCH):
        indices = range(start, min(start + _WEIGHT_BATCH, len(grid)))
        accumulator.add(torch.ones((len(indices), *grid.patch_size)), indices)
    return accumulator.weight_sum(mode)


def central_patch(grid: PatchGrid) -> int:
    """Index of the patch whose centre is nearest the volume's centre (first one on ties)."""
    centres = grid.origins + (np.asarray(grid.patch_size) - 1) / 2.0
    middle = (np.asarray(grid.shape) - 1) / 2.0
    return int(np.argmin(((centres - middle) ** 2).sum(axis=1)))


def _stacked(probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(M, Z, Y, X)`` stack of the modes' probabilities, after checking there is one shape."""
    if not probabilities:
        raise InvalidInputError("no fused probabilities to compare: the run fused no mode")
    shapes = {mode: np.shape(prob) for mode, prob in probabilities.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 3:
        raise InvalidInputError(f"the fused probabilities must be 3-D arrays of one shape, found {shapes}")
    return np.stack([np.asarray(prob, dtype=np.float32) for prob in probabilities.values()])
