"""Review of a prediction against a reference: metrics, lesion rows, confusion maps, PR curve, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.constants import FN, FP, TP
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation.lesions import confusion_map
from napari_lesionseg.evaluation.metrics import average_precision, compute_metrics
from napari_lesionseg.evaluation.review import (
    CURVE_POINTS,
    REVIEW_METRICS,
    lesion_coverage,
    lesion_voxels,
    review_masks,
    thin_curve,
)

SPACING = (1.0, 2.0, 0.5)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    """Reference lesions A (detected), B (missed), D (half detected); predicted A, C (false), half of D."""
    pred, ref = np.zeros((12, 12, 12), np.uint8), np.zeros((12, 12, 12), np.uint8)
    ref[1:3, 1:3, 1:3] = ref[1:3, 8:10, 8:10] = ref[7:9, 1:5, 7:9] = 1
    pred[1:3, 1:3, 1:3] = pred[8:10, 8:10, 1:3] = pred[7:9, 1:3, 7:9] = 1
    return pred, ref


def _row(review, source: str, voxel: tuple[int, int, int]) -> int:
    labels = review.match.gt_labels if source == "reference" else review.match.pred_labels
    label = labels[voxel]
    return next(i for i, lesion in enumerate(review.lesions) if lesion.source == source and lesion.label == label)


def test_review_matches_the_metrics_and_lesion_engines():
    pred, ref = _pair()
    review = review_masks(pred, ref, spacing=SPACING)
    expected = compute_metrics(pred, ref, spacing=SPACING)
    assert all(review.metrics[key] == expected[key] for key in REVIEW_METRICS)
    assert [lesion.status for lesion in review.lesions] == ["TP", "FN", "TP", "TP", "TP", "FP"]
    assert np.array_equal(review.voxel_map, confusion_map(pred != 0, ref != 0))
    assert review.operating_point == (expected["sensitivity"], expected["ppv"])
    assert review.curve is None and all(lesion.mean_prob is None for lesion in review.lesions)


def test_lesion_map_colours_whole_lesions_by_status():
    pred, ref = _pair()
    review = review_masks(pred, ref, spacing=SPACING)
    assert review.confusion("voxel")[7, 4, 7] == FN  # the missed half of D
    assert review.confusion("lesion")[7, 4, 7] == TP  # D was detected
    assert review.confusion("lesion")[1, 8, 8] == FN and review.confusion("lesion")[8, 8, 1] == FP
    with pytest.raises(InvalidInputError, match="confusion mode"):
        review.confusion("pixel")


def test_any_nonzero_label_is_lesion():
    pred, ref = _pair()
    assert review_masks(pred * 2, ref * 7, spacing=SPACING).metrics == review_masks(pred, ref, spacing=SPACING).metrics


def test_probability_gives_apr_thinned_curve_and_mean_probability():
    pred, ref = _pair()
    rng = np.random.default_rng(0)
    prob = np.clip(0.6 * ref + 0.4 * rng.random(ref.shape), 0, 1).astype(np.float32)
    review = review_masks(prob >= 0.5, ref, spacing=SPACING, prob=prob)
    assert review.metrics["apr"] == pytest.approx(average_precision(prob, ref))
    recall, precision = review.curve
    assert 2 <= recall.size <= CURVE_POINTS and recall[-1] == 0.0 and precision[-1] == 1.0
    assert np.all((precision >= 0) & (precision <= 1))
    row = _row(review, "reference", (1, 1, 1))
    assert review.lesions[row].mean_prob == pytest.approx(float(prob[1:3, 1:3, 1:3].mean()))


def test_shape_mismatches_name_the_masks():
    pred, ref = _pair()
    with pytest.raises(InvalidInputError, match="'rater 2' has shape"):
        review_masks(pred[:-1], ref, spacing=SPACING, pred_name="rater 2")
    with pytest.raises(InvalidInputError, match="probability map has shape"):
        review_masks(pred, ref, spacing=SPACING, prob=np.zeros((2, 2, 2), np.float32))


def test_empty_masks_and_one_voxel_volumes():
    empty = np.zeros((5, 6, 7), bool)
    review = review_masks(empty, empty, spacing=SPACING, prob=np.zeros((5, 6, 7), np.float32))
    assert review.lesions == [] and review.curve is None and review.operating_point is None
    assert not review.voxel_map.any() and review.metrics["dsc"] == 1.0
    one = np.ones((1, 1, 1), bool)
    review = review_masks(one, one, spacing=(1, 1, 1))
    assert [lesion.status for lesion in review.lesions] == ["TP", "TP"] and review.voxel_map[0, 0, 0] == TP


def test_lesion_voxels_and_coverage_of_a_corrected_mask():
    pred, ref = _pair()
    review = review_masks(pred, ref, spacing=SPACING)
    false_positive = _row(review, "prediction", (8, 8, 1))
    voxels = lesion_voxels(review, false_positive)
    selected = np.zeros(pred.shape, bool)
    selected[voxels] = True
    assert np.array_equal(selected, _box(pred.shape, np.s_[8:10, 8:10, 1:3]))
    corrected = pred.copy()
    corrected[voxels] = 0  # reject the false positive
    coverage = lesion_coverage(review, corrected)
    assert coverage[false_positive] == 0.0
    assert coverage[_row(review, "reference", (1, 1, 1))] == 1.0
    assert coverage[_row(review, "reference", (7, 1, 7))] == pytest.approx(0.5)
    with pytest.raises(InvalidInputError, match="corrected mask has shape"):
        lesion_coverage(review, corrected[:-1])


def test_thin_curve_keeps_both_ends_and_covers_x():
    x = np.linspace(0, 1, 10_001) ** 8  # most points crowd near 0
    tx, ty = thin_curve(x, np.sqrt(x), 50)
    assert tx.size <= 52 and tx[0] == 0 and tx[-1] == 1 and np.allclose(ty, np.sqrt(tx))
    assert np.diff(tx).max() < 0.05  # no long straight chord across the sparse part
    assert thin_curve(x[::-1], x[::-1], 50)[0][0] == 1.0  # decreasing x (the PR layout) works too
    small = np.arange(5.0)
    assert thin_curve(small, small, 50)[0] is small


def test_operating_point_lies_on_the_drawn_curve():
    rng = np.random.default_rng(1)
    _, ref = _pair()
    prob = np.where(ref == 1, rng.uniform(0.3, 1.0, ref.shape), rng.uniform(0.0, 0.6, ref.shape) ** 6)
    prob = prob.astype(np.float32)
    review = review_masks(prob >= 0.5, ref, spacing=SPACING, prob=prob)
    recall, precision = review.curve
    op_recall, op_precision = review.operating_point
    nearest = np.argmin(np.abs(recall - op_recall))
    assert abs(recall[nearest] - op_recall) < 0.02 and abs(precision[nearest] - op_precision) < 0.05


def _box(shape, box) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box] = True
    return mask


def test_minimum_lesion_size_drops_predicted_specks_before_the_review():
    pred, ref = _pair()
    pred[5, 5, 5] = 1  # a one-voxel false positive: 1 mm^3 at SPACING
    assert review_masks(pred, ref, spacing=SPACING).metrics["n_lesions_fp"] == 2
    review = review_masks(pred, ref, spacing=SPACING, min_lesion_mm3=3.0)
    assert review.metrics["n_lesions_fp"] == 1 and review.voxel_map[5, 5, 5] == 0
    assert review.metrics["n_lesions_gt"] == 3  # the reference is never filtered
