"""Weight kernels (B-spline, Gaussian) and the streaming accumulator, against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map

from napari_lesionseg.engine.fusion import FusionAccumulator, bspline2, weight_kernel
from napari_lesionseg.engine.patches import make_grid
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import FUSION_MODES


def _direct_quadratic_bspline(patch: int) -> np.ndarray:
    """The centred quadratic B-spline with support spanning the patch, at voxel centres, peak 1."""
    values = []
    for i in range(patch):
        t = abs((i + 0.5 - patch / 2) * 3 / patch)
        if t <= 0.5:
            values.append(0.75 - t * t)
        elif t < 1.5:
            values.append(0.5 * (1.5 - t) ** 2)
        else:
            values.append(0.0)
    return np.array(values) / 0.75


def _fill(grid, modes, predictions, uncertainty_mode=None):
    acc = FusionAccumulator(grid, modes, uncertainty_mode=uncertainty_mode)
    acc.add(predictions, range(len(grid)))
    return acc


def _brute_force(grid, predictions, kernel):
    """sum(w p) / sum(w) and the weighted std, voxel by voxel over every covering prediction."""
    num = np.zeros(grid.shape)
    den = np.zeros(grid.shape)
    sq = np.zeros(grid.shape)
    for index, origin in enumerate(grid.origins):
        for z, y, x in np.ndindex(*grid.patch_size):
            v = origin + (z, y, x)
            if ((v >= 0) & (v < grid.shape)).all():
                for p in predictions[index]:
                    w = kernel[z, y, x]
                    num[tuple(v)] += w * p[z, y, x]
                    den[tuple(v)] += w
                    sq[tuple(v)] += w * p[z, y, x] ** 2
    mean = num / den
    return mean, np.sqrt(np.maximum(sq / den - mean**2, 0))


class TestKernels:
    @pytest.mark.parametrize("patch", [(64, 64, 64), (5, 8, 13), (1, 2, 3)])
    def test_spline_matches_a_direct_evaluation_of_the_quadratic_bspline(self, patch):
        direct = np.einsum("i,j,k->ijk", *[_direct_quadratic_bspline(p) for p in patch])
        np.testing.assert_allclose(weight_kernel("spline", patch), direct, rtol=1e-6, atol=0)

    def test_bspline_is_a_partition_of_unity(self):
        t = np.linspace(-0.5, 0.5, 101)
        total = sum(bspline2(t - k) for k in range(-3, 4))
        np.testing.assert_allclose(total, 1.0, atol=1e-12)

    def test_spline_is_high_at_the_centre_low_at_the_borders_and_positive(self):
        kernel = weight_kernel("spline", (64, 64, 64))
        assert kernel.max() == kernel[31:33, 31:33, 31:33].max() > 0.99
        assert kernel.min() > 0 and kernel[0, 0, 0] < 1e-9 and kernel[0, 32, 32] < 1e-3

    @pytest.mark.parametrize("mode", FUSION_MODES)
    def test_kernels_are_symmetric_so_flipped_predictions_need_no_flipped_weights(self, mode):
        kernel = weight_kernel(mode, (6, 7, 8))
        np.testing.assert_array_equal(kernel, kernel[::-1, ::-1, ::-1])

    @pytest.mark.parametrize("patch", [(64, 64, 64), (7, 12, 5)])
    def test_gaussian_equals_monais_importance_map(self, patch):
        expected = compute_importance_map(patch, mode="gaussian").numpy()
        np.testing.assert_allclose(weight_kernel("gaussian", patch), expected, rtol=1e-6, atol=1e-7)

    def test_uniform_and_tiling_are_ones(self):
        assert (weight_kernel("uniform", (3, 4, 5)) == 1).all() and (weight_kernel("tiling", (3, 4, 5)) == 1).all()

    def test_unknown_mode_is_refused(self):
        with pytest.raises(InvalidInputError, match="fusion"):
            weight_kernel("median", (4, 4, 4))


class TestAccumulator:
    @pytest.mark.parametrize("shape", [(13, 17, 9), (3, 5, 2), (1, 1, 1)])
    @pytest.mark.parametrize("overlap", [0.0, 0.5, 0.6])
    @pytest.mark.parametrize("border", ["flush", "pad"])
    def test_every_mode_reproduces_a_constant_prediction(self, shape, overlap, border):
        grid = make_grid(shape, (6, 8, 5), overlap, border)
        acc = _fill(grid, FUSION_MODES, torch.full((len(grid), 4, 6, 8, 5), 0.3), uncertainty_mode="spline")
        for mode in FUSION_MODES:
            np.testing.assert_allclose(acc.result(mode), 0.3, rtol=1e-5, err_msg=mode)  # float32 sums
            assert acc.weight_sum(mode).min() > 0, mode  # no division by zero, borders included
        assert acc.uncertainty().max() < 1e-3  # float32 sums: sqrt of a rounding-level variance

    @pytest.mark.parametrize("mode", ["uniform", "spline", "gaussian"])
    def test_weighted_modes_and_uncertainty_equal_a_brute_force_average(self, mode):
        grid = make_grid((7, 9, 6), (4, 5, 4), 0.5, "pad")
        rng = np.random.default_rng(1)
        predictions = rng.uniform(size=(len(grid), 3, 4, 5, 4)).astype(np.float32)
        acc = _fill(grid, (mode,), predictions, uncertainty_mode=mode)
        mean, std = _brute_force(grid, predictions, weight_kernel(mode, grid.patch_size).astype(np.float64))
        np.testing.assert_allclose(acc.result(mode), mean, atol=1e-5)
        np.testing.assert_allclose(acc.uncertainty(), std, atol=2e-3)

    def test_tiling_takes_each_voxel_from_the_patch_with_the_nearest_centre(self):
        grid = make_grid((11, 14, 9), (6, 6, 6), 0.5)
        values = np.arange(len(grid), dtype=np.float32) / len(grid)
        acc = _fill(grid, ("tiling",), torch.from_numpy(values)[:, None, None, None].expand(-1, 6, 6, 6))
        centres = grid.origins + 2.5
        voxels = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), axis=-1)
        distance = ((voxels[..., None, :] - centres) ** 2).sum(axis=-1)
        nearest = values[np.argmin(distance, axis=-1)]  # ties: the first patch, as documented
        np.testing.assert_array_equal(acc.result("tiling"), nearest)
        assert (acc.weight_sum("tiling") == 1).all()

    def test_several_modes_at_once_equal_separate_runs(self):
        grid = make_grid((10, 12, 7), (4, 4, 4), 0.5)
        predictions = torch.rand((len(grid), 2, 4, 4, 4), generator=torch.Generator().manual_seed(0))
        together = _fill(grid, FUSION_MODES, predictions)
        for mode in FUSION_MODES:
            np.testing.assert_array_equal(together.result(mode), _fill(grid, (mode,), predictions).result(mode))

    def test_partial_results_cover_only_the_patches_added(self):
        grid = make_grid((12, 12, 12), (6, 6, 6), 0.5)
        acc = FusionAccumulator(grid, ("spline",))
        acc.add(torch.full((1, 6, 6, 6), 0.8), [0])
        result = acc.result("spline")
        np.testing.assert_allclose(result[:6, :6, :6], 0.8, rtol=1e-6)
        assert (result[6:] == 0).all() and (acc.weight_sum("spline")[6:] == 0).all()
        box = np.array([[2, 3, 4], [9, 9, 9]])
        np.testing.assert_array_equal(acc.partial("spline", box), result[2:9, 3:9, 4:9])

    def test_moving_to_the_cpu_keeps_the_sums(self):
        grid = make_grid((8, 8, 8), (4, 4, 4), 0.5)
        acc = FusionAccumulator(grid, ("uniform",), uncertainty_mode="uniform")
        acc.add(torch.full((1, 4, 4, 4), 0.5), [0])
        acc.to("cpu").add(torch.full((1, 4, 4, 4), 0.25), [1])
        assert acc.result("uniform")[0, 0, 2] == pytest.approx(0.375)
        assert FusionAccumulator.required_bytes((8, 8, 8), 2, True) == 512 * 4 * 5

    def test_misuse_is_refused(self):
        grid = make_grid((8, 8, 8), (4, 4, 4), 0.5)
        acc = FusionAccumulator(grid, ("uniform",))
        with pytest.raises(InvalidInputError, match="do not match"):
            acc.add(torch.zeros((2, 4, 4, 4)), [0])
        with pytest.raises(InvalidInputError, match="not accumulated"):
            acc.result("spline")
        with pytest.raises(InvalidInputError, match="uncertainty"):
            acc.uncertainty()
        with pytest.raises(InvalidInputError, match="uncertainty mode"):
            FusionAccumulator(grid, ("uniform",), uncertainty_mode="spline")


def test_background_patches_add_their_weights_as_zeros_do():
    grid = make_grid((20, 18, 22), 8, overlap=0.5)
    modes = ("spline", "uniform", "tiling", "gaussian")
    rng = np.random.default_rng(0)
    predictions = torch.from_numpy(rng.random((len(grid), 2, 8, 8, 8)).astype(np.float32))
    background = list(range(0, len(grid), 3))
    predicted = [i for i in range(len(grid)) if i not in background]
    with_zeros = FusionAccumulator(grid, modes, uncertainty_mode="spline")
    with_zeros.add(torch.zeros((len(background), 2, 8, 8, 8)), background)
    with_zeros.add(predictions[predicted], predicted)
    weights_only = FusionAccumulator(grid, modes, uncertainty_mode="spline")
    weights_only.add_background(background)
    weights_only.add(predictions[predicted], predicted)
    for mode in modes:
        np.testing.assert_allclose(weights_only.result(mode), with_zeros.result(mode), atol=1e-6)
        np.testing.assert_allclose(weights_only.weight_sum(mode), with_zeros.weight_sum(mode), atol=1e-6)
    np.testing.assert_allclose(weights_only.uncertainty(), with_zeros.uncertainty(), atol=1e-5)
    assert with_zeros.result("spline").max() > 0.1
