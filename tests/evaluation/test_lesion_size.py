"""Minimum lesion size: the boundary (a lesion of exactly the threshold stays, one voxel less goes), spacing, checks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.constants import MIN_LESION_MM3
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation.lesion_size import drop_small_lesions, min_lesion_voxels


def _mask_with_lesions(*sizes: int) -> np.ndarray:
    """Lesions of `sizes` voxels, each a row of voxels along x, far apart."""
    mask = np.zeros((4, 2 * len(sizes) + 1, 12), np.uint8)
    for row, size in enumerate(sizes):
        mask[1, 2 * row + 1, 1 : 1 + size] = 1
    return mask


def test_default_is_msseg_3_mm3():
    assert MIN_LESION_MM3 == 3.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 1.0, 2.0), (0.1, 0.1, 100.0)])
def test_keeps_a_lesion_of_exactly_the_threshold_and_drops_one_voxel_less(spacing):
    voxel = float(np.prod(spacing))
    assert voxel == pytest.approx(1.0)  # 3 voxels are exactly 3 mm^3 on each of these grids
    kept = drop_small_lesions(_mask_with_lesions(3, 2, 5), spacing, 3.0)
    assert kept.dtype == bool
    assert kept[1, 1].sum() == 3 and kept[1, 3].sum() == 0 and kept[1, 5].sum() == 5


def test_volume_counts_the_spacing():
    mask = _mask_with_lesions(2, 1)
    kept = drop_small_lesions(mask, (1.0, 1.0, 1.5), 3.0)  # 2 voxels: 3 mm^3 (kept); 1 voxel: 1.5 mm^3
    assert kept[1, 1].sum() == 2 and kept[1, 3].sum() == 0
    assert min_lesion_voxels((2.0, 2.0, 2.0), 3.0) == 1  # at 2 mm every voxel is 8 mm^3: nothing dropped
    assert np.array_equal(drop_small_lesions(mask, (2.0, 2.0, 2.0), 3.0), mask != 0)


def test_zero_keeps_everything_and_diagonal_neighbours_are_one_lesion():
    mask = _mask_with_lesions(1)
    assert np.array_equal(drop_small_lesions(mask, (1.0, 1.0, 1.0), 0.0), mask != 0)
    corner = np.zeros((3, 3, 3), bool)
    corner[0, 0, 0] = corner[1, 1, 1] = corner[2, 2, 2] = True  # 26-connected: one lesion of 3 mm^3
    assert drop_small_lesions(corner, (1.0, 1.0, 1.0), 3.0).sum() == 3
    assert drop_small_lesions(corner, (1.0, 1.0, 1.0), 3.0, connectivity=1).sum() == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(InvalidInputError, match="minimum lesion size"):
        drop_small_lesions(_mask_with_lesions(3), (1.0, 1.0, 1.0), bad)
