"""Voxel-wise metrics and APR against scikit-learn, compute_metrics against independent references."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from scipy import ndimage

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation import metrics

SPACING = (3.0, 0.8, 1.1)  # anisotropic on purpose
RTOL = 1e-6


def _case(shape=(14, 16, 18), seed=0, zero_fraction=0.6, decimals=None):
    """Blobby reference, a probability map correlated with it (with many exact zeros), pred = prob >= 0.5."""
    rng = np.random.default_rng(seed)
    gt = ndimage.binary_dilation(rng.random(shape) < 0.03)
    prob = np.clip(ndimage.gaussian_filter(gt.astype(np.float64), 1.0) + rng.normal(0, 0.15, shape), 0, 1)
    prob[rng.random(shape) < zero_fraction] = 0.0
    if decimals is not None:
        prob = np.round(prob, decimals)  # ties
    prob = prob.astype(np.float32)
    return prob >= 0.5, gt, prob


class TestValidation:
    def test_binary_masks(self):
        assert metrics.as_binary_mask(np.array([[[0, 1]]], np.uint8)).tolist() == [[[False, True]]]
        assert metrics.as_binary_mask(np.array([[[0.0, 1.0]]])).dtype == bool
        mask = np.ones((1, 1, 1), bool)
        assert metrics.as_binary_mask(mask) is mask

    def test_non_binary_mask_needs_a_threshold(self):
        values = np.array([[[0.0, 0.3, 0.5, 1.0]]])
        with pytest.raises(InvalidInputError, match=r"pred\.nii\.gz.*0\.3.*threshold"):
            metrics.as_binary_mask(values, name="pred.nii.gz")
        assert metrics.as_binary_mask(values, threshold=0.5).tolist() == [[[False, False, True, True]]]

    def test_multilabel_and_nan_masks_are_refused(self):
        with pytest.raises(InvalidInputError, match="2"):
            metrics.as_binary_mask(np.array([[[0, 1, 2]]]))
        with pytest.raises(InvalidInputError, match="nan"):
            metrics.as_binary_mask(np.array([[[0.0, np.nan]]]))

    def test_mask_must_be_3d(self):
        with pytest.raises(InvalidInputError, match="3-D"):
            metrics.as_binary_mask(np.zeros((4, 4), bool))

    @pytest.mark.parametrize("bad", [-0.1, 1.5, np.nan, np.inf])
    def test_probabilities_outside_0_1(self, bad):
        prob = np.full((2, 2, 2), 0.5, np.float32)
        prob[0, 0, 0] = bad
        with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
            metrics.check_probability(prob)

    def test_probability_dtypes(self):
        assert metrics.check_probability(np.ones((1, 1, 2), np.uint8)).dtype == np.float32
        assert metrics.check_probability(np.ones((1, 1, 2), np.float16)).dtype == np.float32
        assert metrics.check_probability(np.ones((1, 1, 2), ">f8")).dtype == np.dtype("=f8")  # big-endian NIfTI data

    def test_big_endian_probabilities_give_the_same_apr(self):
        _, gt, prob = _case()
        swapped = prob.astype(">f4")
        assert metrics.average_precision(swapped, gt) == metrics.average_precision(prob, gt)

    @pytest.mark.parametrize("spacing", [(1, 1), (1, 1, 0), (1, 1, -2), (1, np.nan, 1)])
    def test_spacing(self, spacing):
        with pytest.raises(InvalidInputError, match="spacing"):
            metrics.check_spacing(spacing)

    def test_shape_mismatch_is_a_clear_error(self):
        with pytest.raises(InvalidInputError, match=r"prediction shape \(2, 2, 2\) differs from reference shape"):
            metrics.compute_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), spacing=SPACING)
        with pytest.raises(InvalidInputError, match="probability map shape"):
            metrics.compute_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), spacing=SPACING, prob=np.zeros((2, 2, 3)))


class TestVoxelwise:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_against_scikit_learn(self, seed):
        pred, gt, _ = _case(seed=seed)
        y_true, y_pred = gt.ravel(), pred.ravel()
        c = metrics.confusion_counts(pred, gt)
        tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred).ravel()
        assert c == (tp, fp, fn, tn)
        assert metrics.dice(c) == pytest.approx(skm.f1_score(y_true, y_pred), rel=RTOL)
        assert metrics.jaccard(c) == pytest.approx(skm.jaccard_score(y_true, y_pred), rel=RTOL)
        assert metrics.sensitivity(c) == pytest.approx(skm.recall_score(y_true, y_pred), rel=RTOL)
        assert metrics.ppv(c) == pytest.approx(skm.precision_score(y_true, y_pred), rel=RTOL)
        assert metrics.specificity(c) == pytest.approx(skm.recall_score(~y_true, ~y_pred), rel=RTOL)
        for beta in (0.5, 1.5, 2.0, 3.0):
            assert metrics.fbeta(c, beta) == pytest.approx(skm.fbeta_score(y_true, y_pred, beta=beta), rel=RTOL)

    def test_f2_is_the_papers_formula(self):
        c = metrics.Counts(tp=30, fp=7, fn=11, tn=1000)
        assert metrics.fbeta(c, 2.0) == pytest.approx(5 * 30 / (5 * 30 + 4 * 11 + 7), rel=1e-12)

    def test_volume_difference_is_signed_relative_to_the_reference(self):
        assert metrics.volume_difference(12.0, 10.0) == pytest.approx(0.2)
        assert metrics.volume_difference(8.0, 10.0) == pytest.approx(-0.2)
        assert metrics.volume_difference(3.0, 0.0) is None

    def test_both_empty_agree_perfectly_one_empty_scores_zero(self):
        both_empty = metrics.Counts(tp=0, fp=0, fn=0, tn=10)
        assert (metrics.dice(both_empty), metrics.jaccard(both_empty), metrics.fbeta(both_empty)) == (1.0, 1.0, 1.0)
        assert metrics.sensitivity(both_empty) is None and metrics.ppv(both_empty) is None
        missed = metrics.Counts(tp=0, fp=0, fn=4, tn=10)
        assert (metrics.dice(missed), metrics.fbeta(missed), metrics.sensitivity(missed)) == (0.0, 0.0, 0.0)

    def test_bad_beta(self):
        with pytest.raises(InvalidInputError, match="beta"):
            metrics.fbeta(metrics.Counts(1, 1, 1, 1), 0.0)


class TestPrecisionRecall:
    @pytest.mark.parametrize(
        ("kwargs", "dtype"),
        [
            ({}, np.float32),  # many exact zeros, all other values distinct
            ({"decimals": 2}, np.float32),  # heavy ties
            ({"zero_fraction": 0.0}, np.float64),  # no zeros at all, float64 map
            ({"decimals": 1, "seed": 5}, np.float64),
        ],
    )
    def test_curve_and_apr_against_scikit_learn(self, kwargs, dtype):
        _, gt, prob = _case(**kwargs)
        prob = prob.astype(dtype)
        precision, recall, thresholds = metrics.precision_recall_curve(prob, gt)
        ref_p, ref_r, ref_t = skm.precision_recall_curve(gt.ravel(), prob.ravel())
        np.testing.assert_allclose(precision, ref_p, rtol=1e-12)
        np.testing.assert_allclose(recall, ref_r, rtol=1e-12)
        np.testing.assert_allclose(thresholds, ref_t, rtol=1e-12)
        apr = metrics.average_precision(prob, gt)
        assert apr == pytest.approx(skm.average_precision_score(gt.ravel(), prob.ravel()), rel=RTOL)

    def test_all_zero_probabilities(self):
        _, gt, _ = _case()
        apr = metrics.average_precision(np.zeros(gt.shape, np.float32), gt)
        assert apr == pytest.approx(gt.mean(), rel=1e-12)  # one threshold: everything is predicted
        assert apr == pytest.approx(skm.average_precision_score(gt.ravel(), np.zeros(gt.size)), rel=RTOL)

    def test_perfect_ranking_and_full_reference(self):
        _, gt, _ = _case()
        assert metrics.average_precision(gt.astype(np.float32), gt) == 1.0
        assert metrics.average_precision(np.full(gt.shape, 0.3), np.ones_like(gt)) == 1.0

    def test_empty_reference(self):
        prob = np.full((3, 3, 3), 0.4, np.float32)
        assert metrics.average_precision(prob, np.zeros((3, 3, 3), bool)) is None
        with pytest.raises(InvalidInputError, match="reference is empty"):
            metrics.precision_recall_curve(prob, np.zeros((3, 3, 3), bool))


def _monai_surface(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    a, b = torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd_mm": compute_hausdorff_distance(a, b, include_background=True, spacing=SPACING).item(),
            "hd95_mm": compute_hausdorff_distance(a, b, include_background=True, spacing=SPACING, percentile=95).item(),
            "assd_mm": compute_average_surface_distance(a, b, include_background=True, symmetric=True, spacing=SPACING).item(),
        }


class TestComputeMetrics:
    def test_every_value_against_an_independent_reference(self):
        pred, gt, prob = _case(seed=3)
        result = metrics.compute_metrics(pred.astype(np.uint8), gt, spacing=SPACING, prob=prob, beta=1.5)
        y_true, y_pred = gt.ravel(), pred.ravel()
        expected = {
            "dsc": skm.f1_score(y_true, y_pred),
            "sensitivity": skm.recall_score(y_true, y_pred),
            "specificity": skm.recall_score(~y_true, ~y_pred),
            "ppv": skm.precision_score(y_true, y_pred),
            "jaccard": skm.jaccard_score(y_true, y_pred),
            "f2": skm.fbeta_score(y_true, y_pred, beta=2),
            "fbeta": skm.fbeta_score(y_true, y_pred, beta=1.5),
            "apr": skm.average_precision_score(y_true, prob.ravel()),
            "volume_gt_ml": gt.sum() * np.prod(SPACING) / 1000,
            "volume_pred_ml": pred.sum() * np.prod(SPACING) / 1000,
            "vd": (pred.sum() - gt.sum()) / gt.sum(),
            "vd_abs": abs(pred.sum() - gt.sum()) / gt.sum(),
            **_monai_surface(pred, gt),
        }
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, rel=RTOL), key
        labels_gt, n_gt = ndimage.label(gt, np.ones((3, 3, 3)))
        labels_pred, n_pred = ndimage.label(pred, np.ones((3, 3, 3)))
        assert (result["n_lesions_gt"], result["n_lesions_pred"]) == (n_gt, n_pred)
        detected = sum(pred[labels_gt == i].any() for i in range(1, n_gt + 1))
        false_positive = sum(not gt[labels_pred == i].any() for i in range(1, n_pred + 1))
        assert result["ltpr"] == pytest.approx(detected / n_gt, rel=1e-12)
        assert result["lfpr"] == pytest.approx(false_positive / n_pred, rel=1e-12)
        assert result["beta"] == 1.5 and result["connectivity"] == 3 and result["spacing"] == list(SPACING)
        assert result["notes"] == {}

    def test_keys_types_and_json(self):
        pred, gt, prob = _case()
        result = metrics.compute_metrics(pred, gt, spacing=SPACING, prob=prob)
        assert list(result) == [*metrics.METRIC_KEYS, "spacing", "notes"]
        required = {
            "dsc", "sensitivity", "specificity", "ppv", "jaccard", "f2", "apr", "ltpr", "lfpr", "vd",
            "assd_mm", "hd_mm", "hd95_mm", "n_lesions_gt", "n_lesions_pred", "volume_gt_ml", "volume_pred_ml",
        }  # fmt: skip
        assert required <= set(result)
        for key in metrics.METRIC_KEYS:
            assert type(result[key]) in (int, float), key  # plain python numbers, never numpy scalars
        json.dumps(result, allow_nan=False)

    def test_without_probability_map_apr_is_null_with_a_reason(self):
        pred, gt, _ = _case()
        result = metrics.compute_metrics(pred, gt, spacing=SPACING)
        assert result["apr"] is None
        assert result["notes"] == {"apr": "no probability map given"}

    def test_both_empty(self):
        empty = np.zeros((4, 5, 6), bool)
        result = metrics.compute_metrics(empty, empty, spacing=SPACING, prob=np.zeros(empty.shape))
        assert (result["dsc"], result["jaccard"], result["f2"], result["specificity"]) == (1.0, 1.0, 1.0, 1.0)
        assert (result["assd_mm"], result["hd_mm"], result["hd95_mm"]) == (0.0, 0.0, 0.0)
        assert (result["n_lesions_gt"], result["n_lesions_pred"], result["volume_diff_ml"]) == (0, 0, 0.0)
        nulls = {"sensitivity", "ppv", "vd", "vd_abs", "apr", "ltpr", "lfpr"}
        assert set(result["notes"]) == nulls
        assert all(result[key] is None for key in nulls)
        json.dumps(result, allow_nan=False)

    def test_empty_prediction(self):
        _, gt, _ = _case()
        result = metrics.compute_metrics(np.zeros_like(gt), gt, spacing=SPACING)
        assert (result["dsc"], result["sensitivity"], result["ltpr"], result["vd"]) == (0.0, 0.0, 0.0, -1.0)
        assert result["notes"]["hd95_mm"].startswith("prediction is empty")
        assert set(result["notes"]) == {"ppv", "apr", "lfpr", "assd_mm", "hd_mm", "hd95_mm"}

    def test_empty_reference(self):
        pred, _, prob = _case()
        result = metrics.compute_metrics(pred, np.zeros_like(pred), spacing=SPACING, prob=prob)
        assert (result["dsc"], result["ppv"], result["lfpr"]) == (0.0, 0.0, 1.0)
        assert result["notes"]["assd_mm"].startswith("reference is empty")
        assert result["notes"]["apr"].startswith("reference is empty")
        assert set(result["notes"]) == {"sensitivity", "vd", "vd_abs", "apr", "ltpr", "assd_mm", "hd_mm", "hd95_mm"}

    def test_one_voxel_volume(self):
        one = np.ones((1, 1, 1), bool)
        result = metrics.compute_metrics(one, one, spacing=(1.0, 2.0, 0.5), prob=np.ones((1, 1, 1)))
        assert (result["dsc"], result["apr"], result["ltpr"], result["lfpr"], result["hd_mm"]) == (1.0, 1.0, 1.0, 0.0, 0.0)
        assert result["volume_gt_ml"] == pytest.approx(0.001)
        assert result["notes"] == {"specificity": "reference covers the whole volume (TN + FP = 0)"}

    def test_non_binary_prediction_is_refused(self):
        _, gt, prob = _case()
        with pytest.raises(InvalidInputError, match="threshold"):
            metrics.compute_metrics(prob, gt, spacing=SPACING)
