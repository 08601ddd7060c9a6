"""Connected components, ISBI lesion-wise rates (hand-computed cases), per-lesion table, confusion maps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.constants import CONFUSION_COLORS, FN, FP, TP
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation import lesions


def _mask(shape=(6, 10, 12), boxes=()) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for box in boxes:
        mask[box] = True
    return mask


def _isbi_case() -> tuple[np.ndarray, np.ndarray]:
    """Three reference lesions; the prediction hits A fully, B by one voxel, misses C, and adds two FPs.

    Reference: A = [1:3, 1:3, 1:3] (8 voxels), B = [1:3, 5:7, 5:7] (8), C = [4, 8, 9] (1).
    Prediction: A' = A, B' = [2:4, 6:8, 6:8] (touches B at the single voxel [2, 6, 6]),
    F1 = [4, 1, 10] (1 voxel), F2 = [0:2, 8:10, 0:2] (8 voxels).
    Hand count: LTPR = 2 / 3 (A, B detected); LFPR = 2 / 4 (F1, F2 touch no reference voxel).
    """
    gt = _mask(boxes=[np.s_[1:3, 1:3, 1:3], np.s_[1:3, 5:7, 5:7], np.s_[4, 8, 9]])
    pred = _mask(boxes=[np.s_[1:3, 1:3, 1:3], np.s_[2:4, 6:8, 6:8], np.s_[4, 1, 10], np.s_[0:2, 8:10, 0:2]])
    return pred, gt


class TestLabelLesions:
    @pytest.mark.parametrize(
        ("offset", "expected"),
        [
            ((0, 0, 1), {1: 1, 2: 1, 3: 1}),  # faces touch
            ((0, 1, 1), {1: 2, 2: 1, 3: 1}),  # edges touch
            ((1, 1, 1), {1: 2, 2: 2, 3: 1}),  # corners touch
        ],
    )
    def test_connectivity(self, offset, expected):
        mask = np.zeros((3, 3, 3), bool)
        mask[0, 0, 0] = True
        mask[offset] = True
        for connectivity, count in expected.items():
            labels, n = lesions.label_lesions(mask, connectivity)
            assert n == count
            assert set(np.unique(labels[mask])) == set(range(1, count + 1))

    def test_default_is_26_connectivity(self):
        assert lesions.DEFAULT_CONNECTIVITY == 3
        mask = np.zeros((2, 2, 2), bool)
        mask[0, 0, 0] = mask[1, 1, 1] = True
        assert lesions.label_lesions(mask)[1] == 1

    def test_empty_and_one_voxel_volumes(self):
        labels, n = lesions.label_lesions(np.zeros((4, 5, 6), bool))
        assert n == 0 and labels.dtype == np.int32 and not labels.any()
        labels, n = lesions.label_lesions(np.ones((1, 1, 1), bool))
        assert n == 1 and labels[0, 0, 0] == 1

    def test_labels_outside_the_bounding_box_stay_zero(self):
        mask = _mask(boxes=[np.s_[2:4, 3:5, 6:7], np.s_[5, 9, 11]])
        labels, n = lesions.label_lesions(mask)
        assert n == 2
        np.testing.assert_array_equal(labels > 0, mask)

    def test_bad_connectivity(self):
        with pytest.raises(InvalidInputError, match="connectivity"):
            lesions.label_lesions(np.zeros((2, 2, 2), bool), 4)

    def test_non_boolean_refused(self):
        with pytest.raises(InvalidInputError, match="boolean"):
            lesions.label_lesions(np.zeros((2, 2, 2), np.uint8))


class TestLesionwiseRates:
    def test_hand_computed_isbi_case(self):
        pred, gt = _isbi_case()
        match = lesions.match_lesions(pred, gt)
        assert (match.n_gt, match.n_pred) == (3, 4)
        assert match.ltpr == pytest.approx(2 / 3, rel=1e-12)
        assert match.lfpr == pytest.approx(2 / 4, rel=1e-12)
        # ISBI definitions written out over the components directly
        detected = [pred[match.gt_labels == i].any() for i in range(1, 4)]
        false_positive = [not gt[match.pred_labels == i].any() for i in range(1, 5)]
        assert match.gt_detected.tolist() == detected
        assert (~match.pred_hits).tolist() == false_positive

    def test_one_predicted_lesion_spanning_two_reference_lesions_detects_both(self):
        gt = _mask(boxes=[np.s_[2, 2, 2], np.s_[2, 2, 6]])
        pred = _mask(boxes=[np.s_[2, 2, 2:7]])
        match = lesions.match_lesions(pred, gt)
        assert (match.n_gt, match.n_pred, match.ltpr, match.lfpr) == (2, 1, 1.0, 0.0)

    def test_connectivity_changes_the_counts(self):
        gt = _mask(boxes=[np.s_[1, 1, 1], np.s_[2, 2, 2]])  # corner neighbours
        pred = _mask(boxes=[np.s_[1, 1, 1]])
        assert lesions.match_lesions(pred, gt, connectivity=3).ltpr == 1.0  # one lesion, detected
        assert lesions.match_lesions(pred, gt, connectivity=1).ltpr == 0.5  # two lesions, one detected

    def test_no_reference_lesions(self):
        pred = _mask(boxes=[np.s_[1, 1, 1]])
        match = lesions.match_lesions(pred, np.zeros_like(pred))
        assert match.ltpr is None and match.lfpr == 1.0

    def test_no_predicted_lesions(self):
        gt = _mask(boxes=[np.s_[1, 1, 1]])
        match = lesions.match_lesions(np.zeros_like(gt), gt)
        assert match.ltpr == 0.0 and match.lfpr is None

    def test_both_empty(self):
        empty = np.zeros((3, 3, 3), bool)
        match = lesions.match_lesions(empty, empty)
        assert (match.n_gt, match.n_pred, match.ltpr, match.lfpr) == (0, 0, None, None)

    def test_shape_mismatch(self):
        with pytest.raises(InvalidInputError, match="differs"):
            lesions.match_lesions(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))


class TestLesionTable:
    def test_rows_statuses_volumes_centroids_and_probabilities(self):
        pred, gt = _isbi_case()
        prob = np.where(pred, 0.8, 0.1).astype(np.float32)
        prob[1, 1, 1] = 0.95
        spacing = (3.0, 1.0, 0.5)
        affine = np.array([[0, 0, -0.5, 90], [0, -1, 0, 120], [3, 0, 0, -70], [0, 0, 0, 1]], float)
        rows = lesions.lesion_table(lesions.match_lesions(pred, gt), spacing=spacing, prob=prob, affine=affine)
        assert [(r.source, r.status) for r in rows] == [
            ("reference", "TP"), ("reference", "TP"), ("reference", "FN"),
            ("prediction", "FP"), ("prediction", "TP"), ("prediction", "TP"), ("prediction", "FP"),
        ]  # fmt: skip  (labels follow raster order: F2 starts at z = 0, so it is predicted lesion 1)
        a_ref = rows[0]
        assert a_ref.n_voxels == 8
        assert a_ref.volume_ml == pytest.approx(8 * 1.5 / 1000)
        assert a_ref.centroid_voxel == pytest.approx((1.5, 1.5, 1.5))
        assert a_ref.centroid_world == pytest.approx(tuple((affine @ [1.5, 1.5, 1.5, 1])[:3]))
        assert a_ref.max_prob == pytest.approx(0.95)
        assert a_ref.mean_prob == pytest.approx((7 * 0.8 + 0.95) / 8)
        missed = rows[2]
        assert (missed.label, missed.n_voxels, missed.centroid_voxel) == (3, 1, (4.0, 8.0, 9.0))
        assert missed.mean_prob == pytest.approx(0.1) and missed.max_prob == pytest.approx(0.1)
        assert {r.n_voxels for r in rows if r.status == "FP"} == {1, 8}

    def test_without_probability_or_affine(self):
        pred, gt = _isbi_case()
        rows = lesions.lesion_table(lesions.match_lesions(pred, gt), spacing=(1.0, 1.0, 1.0))
        assert all(r.mean_prob is None and r.max_prob is None and r.centroid_world is None for r in rows)
        row = rows[0].as_row()
        assert list(row) == [
            "source", "label", "status", "n_voxels", "volume_ml", "centroid_z", "centroid_y", "centroid_x",
            "world_x_mm", "world_y_mm", "world_z_mm", "mean_prob", "max_prob",
        ]  # fmt: skip
        assert row["world_x_mm"] is None and row["centroid_z"] == 1.5

    def test_empty_masks_give_an_empty_table(self):
        empty = np.zeros((3, 3, 3), bool)
        assert lesions.lesion_table(lesions.match_lesions(empty, empty), spacing=(1.0, 1.0, 1.0)) == []

    def test_bad_inputs(self):
        pred, gt = _isbi_case()
        match = lesions.match_lesions(pred, gt)
        with pytest.raises(InvalidInputError, match="probability map shape"):
            lesions.lesion_table(match, spacing=(1, 1, 1), prob=np.zeros((2, 2, 2)))
        with pytest.raises(InvalidInputError, match="4x4"):
            lesions.lesion_table(match, spacing=(1, 1, 1), affine=np.eye(3))
        with pytest.raises(InvalidInputError, match="spacing"):
            lesions.lesion_table(match, spacing=(1, -1, 1))


class TestConfusionMaps:
    def test_voxelwise(self):
        pred, gt = _isbi_case()
        cmap = lesions.confusion_map(pred, gt)
        assert cmap.dtype == np.uint8
        np.testing.assert_array_equal(cmap == TP, pred & gt)
        np.testing.assert_array_equal(cmap == FN, gt & ~pred)
        np.testing.assert_array_equal(cmap == FP, pred & ~gt)
        np.testing.assert_array_equal(cmap == 0, ~pred & ~gt)

    def test_lesionwise_whole_lesions_take_their_status(self):
        pred, gt = _isbi_case()
        cmap = lesions.lesion_confusion_map(lesions.match_lesions(pred, gt))
        assert (cmap[1:3, 5:7, 5:7] == TP).all()  # reference B: detected by one voxel, all of it TP
        assert (cmap[2:4, 6:8, 6:8] == TP).all()  # the predicted lesion that hit B
        assert cmap[4, 8, 9] == FN  # missed reference C
        assert cmap[4, 1, 10] == FP and (cmap[0:2, 8:10, 0:2] == FP).all()
        np.testing.assert_array_equal(cmap > 0, pred | gt)
        # voxel-wise the same case has FN voxels inside detected lesion B
        assert (lesions.confusion_map(pred, gt)[1:3, 5:7, 5:7] == FN).any()

    def test_every_label_has_a_figure_8_colour(self):
        pred, gt = _isbi_case()
        used = set(np.unique(lesions.confusion_map(pred, gt))) - {0}
        assert used == {TP, FN, FP} and used <= set(CONFUSION_COLORS)
        assert CONFUSION_COLORS[TP][:3] == (0.0, 1.0, 0.0)  # green
        assert CONFUSION_COLORS[FN][:3] == (0.0, 0.0, 1.0)  # blue
        assert CONFUSION_COLORS[FP][:3] == (1.0, 0.0, 0.0)  # red

    def test_empty_maps(self):
        empty = np.zeros((2, 3, 4), bool)
        assert not lesions.confusion_map(empty, empty).any()
        assert not lesions.lesion_confusion_map(lesions.match_lesions(empty, empty)).any()
