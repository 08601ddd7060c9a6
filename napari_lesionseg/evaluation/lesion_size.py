"""Minimum lesion size: drop connected components smaller than a volume in mm^3 from a mask.

Specks of one or two voxels flood the lesion table and the lesion-wise false-positive counts, and
MS evaluations ignore them: the MSSEG 2016 challenge dropped components under 3 mm^3
(`constants.MIN_LESION_MM3`). A component is kept when its volume (voxels x voxel volume) is at least
the threshold, so a lesion of exactly the threshold stays; 0 keeps every component.

Example:
    >>> kept = drop_small_lesions(mask, spacing=(1.0, 1.0, 1.0), min_mm3=3.0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_lesionseg.constants import MIN_LESION_MM3
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation._masks import check_spacing_mm
from napari_lesionseg.evaluation.lesions import DEFAULT_CONNECTIVITY

__all__ = ["MIN_LESION_MM3", "check_min_lesion_mm3", "drop_small_lesions", "mask_volume_ml", "min_lesion_voxels"]

#: Relative slack on the volume comparison, so that 3 voxels of 1 mm^3 are not "less" than 3.0 by rounding.
_TOLERANCE = 1e-9


def check_min_lesion_mm3(min_mm3: float) -> float:
    """`min_mm3` as a float, if it is a finite volume >= 0."""
    value = float(min_mm3)
    if not np.isfinite(value) or value < 0:
        raise InvalidInputError(f"minimum lesion size {min_mm3!r} mm^3 is not usable: expected a volume >= 0 (0 keeps all)")
    return value


def min_lesion_voxels(spacing: Sequence[float], min_mm3: float = MIN_LESION_MM3) -> int:
    """The fewest voxels a kept lesion has on a grid of `spacing` (mm): ceil(min_mm3 / voxel volume)."""
    voxel = float(np.prod(check_spacing_mm(spacing)))
    return int(np.ceil(check_min_lesion_mm3(min_mm3) / voxel * (1 - _TOLERANCE)))


def drop_small_lesions(
    mask: np.ndarray,
    spacing: Sequence[float],
    min_mm3: float = MIN_LESION_MM3,
    connectivity: int = DEFAULT_CONNECTIVITY,
) -> np.ndarray:
    """A boolean copy of `mask` without the connected components smaller than `min_mm3` mm^3.

    Args:
        mask: (Z, Y, X) mask; nonzero is lesion.
        spacing: voxel size in mm along (Z, Y, X).
        min_mm3: smallest volume kept; 0 keeps every component.
        connectivity: 1, 2 or 3 (6, 18 or 26 neighbours), as in `lesions.label_lesions`.
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise InvalidInputError(f"expected a 3-D (Z, Y, X) mask, got shape {mask.shape}")
    if connectivity not in (1, 2, 3):
        raise InvalidInputError(f"connectivity must be 1, 2 or 3, got {connectivity!r}")
    fewest = min_lesion_voxels(spacing, min_mm3)
    if fewest <= 1 or not mask.any():
        return mask.copy()
    labels, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, connectivity))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= fewest
    keep[0] = False
    return keep[labels]


def mask_volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """The volume (mL) of a mask's nonzero voxels on a grid of `spacing` (mm)."""
    return float(np.count_nonzero(mask)) * float(np.prod(check_spacing_mm(spacing))) / 1000.0
