"""Surface distances against MONAI (the convention surface.py follows) and hand-computed cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from monai.metrics.utils import get_mask_edges
from scipy import ndimage

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation import surface

SPACING = (2.5, 0.9, 1.3)  # anisotropic on purpose
RTOL = 1e-6


def _blobs(shape: tuple[int, int, int], density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.binary_dilation(rng.random(shape) < density)


def _ball(shape: tuple[int, int, int], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2


def _monai(pred: np.ndarray, gt: np.ndarray, spacing) -> dict[str, float]:
    a, b = torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd_mm": compute_hausdorff_distance(a, b, include_background=True, spacing=spacing).item(),
            "hd95_mm": compute_hausdorff_distance(a, b, include_background=True, spacing=spacing, percentile=95).item(),
            "assd_mm": compute_average_surface_distance(
                a, b, include_background=True, symmetric=True, spacing=spacing
            ).item(),
        }


CASES = {
    "random": lambda: (_blobs((15, 17, 19), 0.04, 1), _blobs((15, 17, 19), 0.06, 2)),
    "random_dense": lambda: (_blobs((12, 20, 9), 0.15, 3), _blobs((12, 20, 9), 0.1, 4)),
    "shifted_balls": lambda: (_ball((20, 24, 22), (9, 11, 10), 6), _ball((20, 24, 22), (11, 10, 12), 5)),
    "touching_border": lambda: (_ball((10, 12, 14), (0, 0, 0), 6), _ball((10, 12, 14), (9, 11, 13), 7)),
    "single_voxels": lambda: (_ball((5, 6, 7), (1, 1, 1), 0), _ball((5, 6, 7), (4, 5, 2), 0)),
}


class TestSurfaceVoxels:
    @pytest.mark.parametrize("case", CASES)
    def test_matches_monai_get_mask_edges(self, case):
        pred, gt = CASES[case]()
        edges_pred, edges_gt = get_mask_edges(pred, gt, crop=False)
        np.testing.assert_array_equal(surface.surface_voxels(pred), edges_pred)
        np.testing.assert_array_equal(surface.surface_voxels(gt), edges_gt)

    def test_cube_interior_is_not_surface(self):
        mask = np.zeros((7, 7, 7), bool)
        mask[1:6, 1:6, 1:6] = True
        edges = surface.surface_voxels(mask)
        assert edges.sum() == 5**3 - 3**3
        assert not edges[2:5, 2:5, 2:5].any()

    def test_one_voxel_is_its_own_surface_and_border_counts_as_outside(self):
        assert surface.surface_voxels(np.ones((1, 1, 1), bool)).all()
        full = np.ones((3, 3, 3), bool)
        assert surface.surface_voxels(full).sum() == 26  # only the centre has all 6 neighbours inside


class TestAgainstMonai:
    @pytest.mark.parametrize("case", CASES)
    def test_assd_hd_hd95(self, case):
        pred, gt = CASES[case]()
        ours = surface.surface_distance_metrics(pred, gt, SPACING)
        reference = _monai(pred, gt, SPACING)
        for key, value in reference.items():
            assert ours[key] == pytest.approx(value, rel=RTOL), key

    def test_directed_distances_match_monai_hd_directed(self):
        pred, gt = CASES["shifted_balls"]()
        pred_to_gt, gt_to_pred = surface.directed_surface_distances(pred, gt, SPACING)
        a, b = torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # MONAI's own deprecated argument, internally
            directed = compute_hausdorff_distance(a, b, include_background=True, directed=True, spacing=SPACING).item()
        assert pred_to_gt.max() == pytest.approx(directed, rel=RTOL)
        assert pred_to_gt.size == surface.surface_voxels(pred).sum()
        assert gt_to_pred.size == surface.surface_voxels(gt).sum()


class TestConventions:
    def test_two_voxels_along_the_anisotropic_axis(self):
        pred = np.zeros((4, 4, 8), bool)
        gt = np.zeros_like(pred)
        pred[1, 1, 1] = True
        gt[1, 1, 4] = True
        result = surface.surface_distance_metrics(pred, gt, (2.0, 1.0, 0.5))
        assert result == {"assd_mm": 1.5, "hd_mm": 1.5, "hd95_mm": 1.5}

    def test_hd95_is_the_larger_directed_percentile_not_the_pooled_one(self):
        pred, gt = CASES["shifted_balls"]()
        pred[2, 2, 2] = True  # one far outlier on the prediction side only
        result = surface.surface_distance_metrics(pred, gt, SPACING)
        pred_to_gt, gt_to_pred = surface.directed_surface_distances(pred, gt, SPACING)
        directed = max(np.percentile(pred_to_gt, 95), np.percentile(gt_to_pred, 95))
        pooled = np.percentile(np.concatenate([pred_to_gt, gt_to_pred]), 95)
        assert result["hd95_mm"] == pytest.approx(directed, rel=1e-12)
        assert pooled < directed  # the MedPy convention would report less here
        assert result["assd_mm"] == pytest.approx(np.concatenate([pred_to_gt, gt_to_pred]).mean(), rel=1e-12)

    def test_identical_masks_are_at_zero_distance(self):
        mask = _blobs((9, 10, 11), 0.05, 7)
        assert surface.surface_distance_metrics(mask, mask, SPACING) == {"assd_mm": 0.0, "hd_mm": 0.0, "hd95_mm": 0.0}

    def test_position_in_the_volume_does_not_matter(self):
        small = _ball((9, 9, 9), (4, 4, 4), 3), _ball((9, 9, 9), (5, 4, 3), 2)
        padded = tuple(np.pad(m, ((0, 5), (7, 0), (3, 3))) for m in small)
        assert surface.surface_distance_metrics(*small, SPACING) == surface.surface_distance_metrics(*padded, SPACING)

    def test_percentile_parameter(self):
        pred, gt = CASES["random"]()
        full = surface.surface_distance_metrics(pred, gt, SPACING, percentile=100)
        assert full["hd95_mm"] == pytest.approx(full["hd_mm"])


class TestEdgeCases:
    def test_both_empty_is_zero(self):
        empty = np.zeros((3, 4, 5), bool)
        assert surface.surface_distance_metrics(empty, empty, SPACING) == {"assd_mm": 0.0, "hd_mm": 0.0, "hd95_mm": 0.0}
        assert surface.empty_surface_reason(True, True) is None

    @pytest.mark.parametrize("empty_side", ["pred", "gt"])
    def test_one_side_empty_is_none_with_a_reason(self, empty_side):
        empty, full = np.zeros((3, 4, 5), bool), np.zeros((3, 4, 5), bool)
        full[1, 1, 1] = True
        pred, gt = (empty, full) if empty_side == "pred" else (full, empty)
        assert surface.surface_distance_metrics(pred, gt, SPACING) == {"assd_mm": None, "hd_mm": None, "hd95_mm": None}
        reason = surface.empty_surface_reason(empty_side == "pred", empty_side == "gt")
        assert ("prediction" if empty_side == "pred" else "reference") in reason
        assert surface.directed_surface_distances(pred, gt, SPACING)[0].size == 0

    def test_shape_mismatch(self):
        with pytest.raises(InvalidInputError, match="differs"):
            surface.surface_distance_metrics(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 4), bool), SPACING)

    def test_non_boolean_mask_is_refused(self):
        with pytest.raises(InvalidInputError, match="as_binary_mask"):
            surface.surface_distance_metrics(np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), bool), SPACING)

    @pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0)])
    def test_bad_spacing(self, spacing):
        mask = np.ones((2, 2, 2), bool)
        with pytest.raises(InvalidInputError, match="spacing"):
            surface.surface_distance_metrics(mask, mask, spacing)

    def test_bad_percentile(self):
        mask = np.ones((2, 2, 2), bool)
        with pytest.raises(InvalidInputError, match="percentile"):
            surface.surface_distance_metrics(mask, mask, SPACING, percentile=101)
