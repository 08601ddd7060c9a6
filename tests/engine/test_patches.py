"""Patch grids (coverage, borders, the paper's grid, MONAI's grid, Voronoi tiling) and TTA flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices

from napari_lesionseg.engine.patches import TTA_SETS, TTA_VARIANTS, augment, invert, make_grid, tta_variants
from napari_lesionseg.errors import InvalidInputError

ODD_SHAPES = [(13, 17, 9), (1, 1, 1), (5, 20, 3), (17, 9, 31)]


class TestMakeGrid:
    @pytest.mark.parametrize("shape", ODD_SHAPES)
    @pytest.mark.parametrize("patch", [(8, 8, 8), (4, 6, 5)])
    @pytest.mark.parametrize("overlap", [0.0, 0.3, 0.5, 0.75])
    @pytest.mark.parametrize("border", ["flush", "pad"])
    def test_every_voxel_is_covered(self, shape, patch, overlap, border):
        grid = make_grid(shape, patch, overlap, border)
        assert grid.coverage().min() >= 1
        assert grid.origins.shape == (len(grid), 3)

    @pytest.mark.parametrize("shape", ODD_SHAPES)
    def test_flush_grid_stays_inside_the_volume_or_starts_at_zero(self, shape):
        grid = make_grid(shape, (8, 8, 8), 0.5)
        origins, patch = grid.origins, np.array(grid.patch_size)
        assert (origins >= 0).all()
        assert (origins + patch <= np.maximum(shape, patch)).all()
        last = np.array([o[-1] for o in grid.axis_origins])
        assert ((last + patch == np.array(shape)) | (np.array(shape) < patch)).all()  # flush with the border

    def test_volume_smaller_than_the_patch_gets_one_patch_clipped_for_display(self):
        grid = make_grid((3, 5, 2), (8, 8, 8), 0.5)
        assert len(grid) == 1
        np.testing.assert_array_equal(grid.origins, [[0, 0, 0]])
        np.testing.assert_array_equal(grid.boxes(), [[[0, 0, 0], [3, 5, 2]]])

    def test_one_voxel_volume(self):
        grid = make_grid((1, 1, 1), 4, 0.5, "pad")
        assert grid.coverage().tolist() == [[[len(grid)]]]

    @pytest.mark.parametrize(("overlap", "counts"), [(0.5, (5, 8, 9)), (0.75, (9, 15, 17))])
    def test_padded_grid_reproduces_the_papers_patch_counts(self, overlap, counts):
        # Sec. III.C: 128x224x256 with 64^3 patches gives 5x8x9 patches at 50 % and 9x15x17 at 75 %
        grid = make_grid((128, 224, 256), 64, overlap, "pad")
        assert grid.counts == counts
        assert len(grid) == int(np.prod(counts))

    def test_padded_paper_grid_gives_eight_patches_per_voxel(self):
        # 8 patches x 4 augmentations = the paper's 32 predictions per voxel
        coverage = make_grid((128, 224, 256), 64, 0.5, "pad").coverage()
        assert coverage.min() == coverage.max() == 8

    @pytest.mark.parametrize("shape", [(13, 17, 9), (8, 30, 21), (33, 40, 51)])
    @pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.7])
    def test_flush_grid_equals_monais(self, shape, overlap):
        patch = (8, 6, 9)
        stride = [max(1, int(p * (1 - overlap))) if s != p else p for s, p in zip(shape, patch)]
        expected = sorted(tuple(s.start for s in window) for window in dense_patch_slices(shape, patch, stride))
        assert sorted(map(tuple, make_grid(shape, patch, overlap).origins.tolist())) == expected

    def test_zero_overlap_on_whole_patches_is_a_tiling(self):
        grid = make_grid((16, 24, 8), 8, 0.0)
        assert grid.coverage().max() == 1
        np.testing.assert_array_equal(grid.tiling_boxes(), grid.boxes())

    @pytest.mark.parametrize("shape", ODD_SHAPES)
    @pytest.mark.parametrize("border", ["flush", "pad"])
    def test_tiling_cells_partition_the_volume_inside_their_patches(self, shape, border):
        grid = make_grid(shape, (6, 8, 5), 0.5, border)
        count = np.zeros(shape, dtype=int)
        for (start, stop), (box_start, box_stop) in zip(grid.tiling_boxes(), grid.boxes()):
            count[tuple(slice(a, b) for a, b in zip(start, stop))] += 1
            assert (start >= box_start).all() and (stop <= box_stop).all() or (stop <= start).any()
        assert (count == 1).all()

    def test_tiling_cell_holds_the_voxels_nearest_to_the_patch_centre(self):
        grid = make_grid((11, 14, 9), (6, 6, 6), 0.5)
        centres = grid.origins + (np.array(grid.patch_size) - 1) / 2
        voxels = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), axis=-1).reshape(-1, 3)
        distance = ((voxels[:, None, :] - centres[None]) ** 2).sum(axis=-1)
        nearest = distance.min(axis=1)
        for index, (start, stop) in enumerate(grid.tiling_boxes()):
            inside = ((voxels >= start) & (voxels < stop)).all(axis=1)
            np.testing.assert_allclose(distance[inside, index], nearest[inside])

    @pytest.mark.parametrize("overlap", [-0.1, 1.0, 1.5, float("nan")])
    def test_overlap_outside_zero_one_is_refused(self, overlap):
        with pytest.raises(InvalidInputError, match="overlap"):
            make_grid((10, 10, 10), 4, overlap)

    @pytest.mark.parametrize(("shape", "patch"), [((10, 10), 4), ((10, 0, 10), 4), ((10, 10, 10), (4, 0, 4)), ((10, 10, 10), 2.5)])
    def test_bad_shapes_are_refused(self, shape, patch):
        with pytest.raises(InvalidInputError):
            make_grid(shape, patch)

    def test_unknown_border_is_refused(self):
        with pytest.raises(InvalidInputError, match="border"):
            make_grid((10, 10, 10), 4, border="reflect")


class TestOrder:
    def test_patches_covering_the_priority_slice_come_first(self):
        grid = make_grid((40, 20, 20), 8, 0.5)
        order = grid.order(priority_slice=21)
        assert sorted(order.tolist()) == list(range(len(grid)))
        starts = grid.origins[order, 0]
        covers = (starts <= 21) & (21 < starts + 8)
        n_covering = int(covers.sum())
        assert n_covering > 0 and covers[:n_covering].all() and not covers[n_covering:].any()

    def test_priority_along_another_axis(self):
        grid = make_grid((20, 20, 40), 8, 0.5)
        first = grid.origins[grid.order(priority_slice=39, axis=2)[0]]
        assert first[2] + 8 == 40

    def test_no_priority_is_c_order(self):
        grid = make_grid((20, 20, 20), 8, 0.5)
        np.testing.assert_array_equal(grid.order(), np.arange(len(grid)))

    def test_priority_slice_outside_the_volume_is_refused(self):
        with pytest.raises(InvalidInputError, match="slice"):
            make_grid((20, 20, 20), 8).order(priority_slice=20)


class TestTTA:
    @pytest.mark.parametrize("variant", list(TTA_VARIANTS))
    def test_each_variant_inverts_exactly(self, variant):
        x = torch.randn(2, 3, 5, 6, 7)
        np.testing.assert_array_equal(invert(augment(x, variant), variant).numpy(), x.numpy())
        a = x.numpy()
        np.testing.assert_array_equal(invert(augment(a, variant), variant), a)

    @pytest.mark.parametrize("variant", [v for v in TTA_VARIANTS if v != "identity"])
    def test_each_variant_changes_the_patch(self, variant):
        x = torch.randn(1, 1, 5, 6, 7)
        assert not torch.equal(augment(x, variant), x)

    @pytest.mark.parametrize(("variant", "plane"), [("rot180_yx", (3, 4)), ("rot180_zx", (2, 4)), ("rot180_zy", (2, 3))])
    def test_paper_variants_are_180_degree_rotations(self, variant, plane):
        x = torch.randn(2, 1, 5, 6, 7)
        assert torch.equal(augment(x, variant), torch.rot90(x, 2, plane))

    def test_sets(self):
        assert tta_variants("none") == ("identity",)
        assert tta_variants("paper") == ("identity", "rot180_yx", "rot180_zx", "rot180_zy")
        mirrors = {TTA_VARIANTS[v] for v in tta_variants("mirror8")}
        assert len(mirrors) == 8 and set(TTA_SETS) == {"none", "paper", "mirror8"}

    def test_unknown_names_are_refused(self):
        with pytest.raises(InvalidInputError):
            tta_variants("all")
        with pytest.raises(InvalidInputError):
            augment(np.zeros((2, 2, 2)), "rot90")
