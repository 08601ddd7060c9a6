"""Fusion-mode comparison helpers: disagreement maps, per-mode metrics, weight sums, central patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lesionseg.engine.fusion import FusionAccumulator
from napari_lesionseg.engine.patches import make_grid
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation.compare import central_patch, disagreement, mask_disagreement, mode_metrics, weight_sum


def _probabilities(shape=(6, 7, 5), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random(shape).astype(np.float32)
    return {"tiling": base, "uniform": np.clip(base + 0.1, 0, 1), "spline": np.clip(base - 0.05, 0, 1)}


class TestDisagreement:
    def test_is_the_spread_of_the_modes(self):
        probs = _probabilities()
        spread = disagreement(probs)
        stack = np.stack(list(probs.values()))
        np.testing.assert_allclose(spread, stack.max(0) - stack.min(0))
        assert spread.dtype == np.float32 and spread.min() >= 0

    def test_identical_modes_agree_everywhere(self):
        p = np.full((3, 3, 3), 0.7, np.float32)
        assert not disagreement({"tiling": p, "spline": p}).any()
        assert not mask_disagreement({"tiling": p, "spline": p}, 0.5).any()

    def test_masks_differ_only_where_the_threshold_separates_the_modes(self):
        a = np.array([0.2, 0.6, 0.7, 0.4], np.float32).reshape(1, 1, 4)
        b = np.array([0.3, 0.4, 0.8, 0.45], np.float32).reshape(1, 1, 4)
        assert mask_disagreement({"tiling": a, "spline": b}, 0.5).ravel().tolist() == [False, True, False, False]

    def test_one_voxel_and_one_mode(self):
        p = np.array([[[0.5]]], np.float32)
        assert disagreement({"spline": p}).tolist() == [[[0.0]]]

    @pytest.mark.parametrize(
        "probs", [{}, {"a": np.zeros((2, 2, 2)), "b": np.zeros((2, 2, 3))}, {"a": np.zeros((2, 2))}]
    )
    def test_bad_inputs_are_refused_clearly(self, probs):
        with pytest.raises(InvalidInputError):
            disagreement(probs)


class TestModeMetrics:
    def test_each_mode_is_scored_against_the_reference(self):
        gt = np.zeros((8, 8, 8), bool)
        gt[2:5, 2:5, 2:5] = True
        perfect = gt.astype(np.float32)
        shifted = np.roll(perfect, 1, axis=0)
        metrics = mode_metrics({"spline": perfect, "tiling": shifted}, gt, threshold=0.5, spacing=(1, 1, 1))
        assert list(metrics) == ["spline", "tiling"]
        assert metrics["spline"]["dsc"] == 1.0 and metrics["tiling"]["dsc"] == pytest.approx(2 / 3)
        assert metrics["spline"]["apr"] == 1.0

    def test_empty_reference_gives_none_rates_not_nan(self):
        empty = np.zeros((4, 4, 4), np.float32)
        metrics = mode_metrics({"spline": empty}, empty, threshold=0.5, spacing=(1, 1, 1))
        assert metrics["spline"]["dsc"] == 1.0 and metrics["spline"]["sensitivity"] is None

    def test_reference_on_another_grid_is_refused(self):
        with pytest.raises(InvalidInputError, match="reference mask has shape"):
            mode_metrics({"spline": np.zeros((4, 4, 4))}, np.zeros((4, 4, 5)), threshold=0.5, spacing=(1, 1, 1))


class TestWeightSum:
    def test_uniform_counts_the_patches_and_tiling_is_one_everywhere(self):
        grid = make_grid((20, 13, 9), 8, overlap=0.5)
        np.testing.assert_array_equal(weight_sum(grid, "uniform"), grid.coverage())
        np.testing.assert_array_equal(weight_sum(grid, "tiling"), np.ones(grid.shape))

    def test_spline_matches_what_a_complete_run_accumulates(self):
        grid = make_grid((12, 10, 9), 6, overlap=0.5, border="pad")
        accumulator = FusionAccumulator(grid, ("spline",))
        accumulator.add(torch.rand(len(grid), 6, 6, 6), range(len(grid)))
        np.testing.assert_allclose(weight_sum(grid, "spline"), accumulator.weight_sum("spline"), rtol=1e-6)
        assert weight_sum(grid, "spline").min() > 0  # every voxel covered

    def test_unknown_mode_is_refused(self):
        with pytest.raises(InvalidInputError, match="fusion modes"):
            weight_sum(make_grid((4, 4, 4), 4), "median")


class TestCentralPatch:
    def test_picks_the_patch_nearest_the_volume_centre(self):
        grid = make_grid((24, 24, 24), 8, overlap=0.5)
        origin = grid.origins[central_patch(grid)]
        assert origin.tolist() == [8, 8, 8]

    def test_a_single_patch(self):
        assert central_patch(make_grid((1, 1, 1), 4)) == 0
