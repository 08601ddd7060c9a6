"""Segmentation metrics: voxel-wise counts and scores, the precision-recall curve and APR, and
:func:`compute_metrics`, the one dict of numbers that the CLI, the review panel and training use.

Voxel-wise definitions (Hashemi et al. 2018, Sec. IV.A; ISBI 2015):
DSC = 2TP / (2TP + FP + FN), Jaccard = TP / (TP + FP + FN), sensitivity (TPR, recall) = TP / (TP + FN),
specificity = TN / (TN + FP), PPV (precision) = TP / (TP + FP),
F-beta = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP) (F2 = 5TP / (5TP + 4FN + FP)),
VD = (Vseg - Vgt) / Vgt (signed, as in ISBI) and its absolute value.

Empty masks: the overlap scores (DSC, Jaccard, F-beta) are 1 when both masks are empty (perfect
agreement) and 0 when exactly one is. Rates over an empty set (sensitivity, specificity, PPV, VD, APR,
LTPR, LFPR) and distances to an empty surface are ``None``, and ``notes[key]`` says why; nothing is
ever NaN.

APR is scikit-learn's average precision, ``sum_k (R_k - R_{k-1}) P_k`` over every distinct probability
as threshold (no interpolation, no binning), computed from one sort of the non-zero probabilities; the
voxels of probability exactly 0 form the last threshold and are counted, not sorted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation import lesions, surface

__all__ = [
    "METRIC_KEYS",
    "Counts",
    "as_binary_mask",
    "check_probability",
    "check_spacing",
    "confusion_counts",
    "dice",
    "jaccard",
    "fbeta",
    "sensitivity",
    "specificity",
    "ppv",
    "volume_difference",
    "precision_recall_curve",
    "average_precision",
    "compute_metrics",
]

#: The scalar keys of :func:`compute_metrics`, in the order tables and CSV files list them.
METRIC_KEYS: tuple[str, ...] = (
    "dsc", "sensitivity", "specificity", "ppv", "jaccard", "f2", "fbeta", "beta", "apr",
    "ltpr", "lfpr", "n_lesions_gt", "n_lesions_pred", "n_lesions_detected", "n_lesions_fp",
    "vd", "vd_abs", "volume_gt_ml", "volume_pred_ml", "volume_diff_ml",
    "assd_mm", "hd_mm", "hd95_mm", "tp", "fp", "fn", "tn", "connectivity",
)  # fmt: skip

_REFERENCE_EMPTY = "reference is empty (TP + FN = 0)"


class Counts(NamedTuple):
    """Voxel-wise confusion counts."""

    tp: int
    fp: int
    fn: int
    tn: int


def as_binary_mask(array: np.ndarray, *, name: str = "mask", threshold: float | None = None) -> np.ndarray:
    """A boolean (Z, Y, X) mask from a bool or 0/1 array, or from any array with an explicit `threshold`.

    Args:
        array: the mask (or, with `threshold`, a probability map).
        name: how error messages call the array (a file name or layer name is best).
        threshold: if given, voxels ``>= threshold`` are lesion (the paper's rule at 0.5, Sec. III.F).

    Raises:
        InvalidInputError: if the array is not 3-D, or holds values other than 0 and 1 without a threshold.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise InvalidInputError(f"{name}: expected a 3-D (Z, Y, X) mask, got shape {array.shape}")
    if threshold is not None:
        return array >= threshold
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)):
        raise InvalidInputError(f"{name}: expected a numeric mask, got dtype {array.dtype}")
    stray = (array != 0) & (array != 1)
    if stray.any():
        examples = np.unique(array[stray])[:5].tolist()
        raise InvalidInputError(
            f"{name}: expected a binary mask of 0 and 1, found other values such as {examples}; "
            "give a threshold (e.g. 0.5, `--threshold` on the command line) to binarise a probability map"
        )
    return array != 0


def check_probability(prob: np.ndarray, *, name: str = "probability map") -> np.ndarray:
    """Return `prob` as float32/float64 after checking that it is 3-D, finite and within [0, 1]."""
    prob = np.asarray(prob)
    if prob.ndim != 3:
        raise InvalidInputError(f"{name}: expected a 3-D (Z, Y, X) array, got shape {prob.shape}")
    if prob.dtype.kind == "f" and prob.dtype.itemsize in (4, 8):
        prob = prob.astype(prob.dtype.newbyteorder("="), copy=False)  # native order: APR sorts the raw bits
    else:
        prob = prob.astype(np.float32)
    if prob.size:
        low, high = float(prob.min()), float(prob.max())
        if not (0.0 <= low and high <= 1.0):  # also false for NaN
            raise InvalidInputError(
                f"{name}: probabilities must be finite and within [0, 1], found range [{low}, {high}]; "
                "apply a sigmoid to logits, or rescale the map"
            )
    return prob


def check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Spacing as three positive finite floats (mm along Z, Y, X)."""
    values = np.asarray(spacing, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values) & (values > 0)):
        raise InvalidInputError(f"spacing must be three positive millimetre values (Z, Y, X), got {spacing!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


def confusion_counts(pred: np.ndarray, gt: np.ndarray) -> Counts:
    """TP, FP, FN, TN voxel counts of two boolean masks of the same shape."""
    _check_same_shape(pred, gt, "prediction", "reference")
    tp = int(np.count_nonzero(pred & gt))
    n_pred, n_gt = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    return Counts(tp=tp, fp=n_pred - tp, fn=n_gt - tp, tn=int(pred.size) - n_pred - n_gt + tp)


def dice(c: Counts) -> float:
    """Dice similarity coefficient; 1 when both masks are empty."""
    return fbeta(c, 1.0)


def jaccard(c: Counts) -> float:
    """Jaccard index; 1 when both masks are empty."""
    union = c.tp + c.fp + c.fn
    return c.tp / union if union else 1.0


def fbeta(c: Counts, beta: float = 2.0) -> float:
    """F-beta score (beta > 1 favours recall); 1 when both masks are empty."""
    if not beta > 0:
        raise InvalidInputError(f"beta must be positive, got {beta}")
    b2 = beta * beta
    denominator = (1 + b2) * c.tp + b2 * c.fn + c.fp
    return (1 + b2) * c.tp / denominator if denominator else 1.0


def sensitivity(c: Counts) -> float | None:
    """TP / (TP + FN); ``None`` when the reference is empty."""
    return _ratio(c.tp, c.tp + c.fn)


def specificity(c: Counts) -> float | None:
    """TN / (TN + FP); ``None`` when the reference covers the whole volume."""
    return _ratio(c.tn, c.tn + c.fp)


def ppv(c: Counts) -> float | None:
    """TP / (TP + FP) (precision); ``None`` when the prediction is empty."""
    return _ratio(c.tp, c.tp + c.fp)


def volume_difference(volume_pred: float, volume_gt: float) -> float | None:
    """Signed relative volume difference (Vseg - Vgt) / Vgt (ISBI 2015); ``None`` when Vgt = 0."""
    return (volume_pred - volume_gt) / volume_gt if volume_gt > 0 else None


def precision_recall_curve(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact precision-recall curve over every distinct probability, laid out as scikit-learn's.

    Returns:
        ``(precision, recall, thresholds)``: thresholds increasing; precision and recall one longer, with
        a final point (1, 0). Precision at a threshold t counts the voxels with probability >= t.

    Raises:
        InvalidInputError: if the reference mask is empty (recall is undefined) or shapes differ.
    """
    prob, gt = _check_prob_pair(prob, gt)
    if not gt.any():
        raise InvalidInputError("reference is empty: precision and recall are undefined")
    thresholds, tps, fps = _threshold_counts(prob, gt)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        thresholds[::-1],
    )


def average_precision(prob: np.ndarray, gt: np.ndarray) -> float | None:
    """Area under the precision-recall curve (APR), as scikit-learn's `average_precision_score`.

    Returns ``None`` if the reference mask is empty.
    """
    prob, gt = _check_prob_pair(prob, gt)
    if not gt.any():
        return None
    _, tps, fps = _threshold_counts(prob, gt)
    precision = tps / (tps + fps)
    recall_steps = np.diff(tps, prepend=0) / tps[-1]
    return float(np.dot(recall_steps, precision))


def compute_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    spacing: Sequence[float],
    prob: np.ndarray | None = None,
    connectivity: int = lesions.DEFAULT_CONNECTIVITY,
    beta: float = 2.0,
) -> dict[str, Any]:
    """Every metric of a prediction against a reference, as one JSON-serialisable dict.

    Args:
        pred: predicted mask (Z, Y, X), bool or 0/1 (binarise probabilities with :func:`as_binary_mask`).
        gt: reference mask on the same grid.
        spacing: voxel size in mm along (Z, Y, X) (`Volume.geometry.spacing`).
        prob: optional probability map in [0, 1] on the same grid, for ``apr``.
        connectivity: lesion connectivity, 1 (6 neighbours), 2 (18) or 3 (26, default).
        beta: the beta of ``fbeta`` (``f2`` is always reported too).

    Returns:
        The keys of :data:`METRIC_KEYS` (python floats, ints or ``None``), plus ``spacing`` (list) and
        ``notes`` (``{key: reason}`` for every ``None``). See the README's metrics table.

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((4, 4, 4), bool); gt[1:3, 1:3, 1:3] = True
        >>> compute_metrics(gt, gt, spacing=(1.0, 1.0, 1.0))["dsc"]
        1.0
    """
    pred = as_binary_mask(pred, name="prediction")
    gt = as_binary_mask(gt, name="reference")
    _check_same_shape(pred, gt, "prediction", "reference")
    spacing = check_spacing(spacing)
    counts = confusion_counts(pred, gt)
    result: dict[str, Any] = {"beta": float(beta), "connectivity": int(connectivity), "spacing": list(spacing)}
    result.update(_voxel_scores(counts, beta))
    result.update(_volumes(counts, spacing))
    result["apr"] = None
    if prob is not None:
        result["apr"] = average_precision(prob, gt)
    match = lesions.match_lesions(pred, gt, connectivity=connectivity)
    result.update(
        ltpr=match.ltpr,
        lfpr=match.lfpr,
        n_lesions_gt=match.n_gt,
        n_lesions_pred=match.n_pred,
        n_lesions_detected=int(match.gt_detected.sum()),
        n_lesions_fp=int(match.n_pred - match.pred_hits.sum()),
    )
    result.update(surface.surface_distance_metrics(pred, gt, spacing))
    result["notes"] = _null_reasons(result, counts, prob_given=prob is not None)
    return {key: result[key] for key in (*METRIC_KEYS, "spacing", "notes")}


def _voxel_scores(c: Counts, beta: float) -> dict[str, Any]:
    return {
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "tn": c.tn,
        "dsc": dice(c),
        "jaccard": jaccard(c),
        "sensitivity": sensitivity(c),
        "specificity": specificity(c),
        "ppv": ppv(c),
        "f2": fbeta(c, 2.0),
        "fbeta": fbeta(c, beta),
    }


def _volumes(c: Counts, spacing: tuple[float, float, float]) -> dict[str, Any]:
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    volume_gt, volume_pred = (c.tp + c.fn) * voxel_ml, (c.tp + c.fp) * voxel_ml
    vd = volume_difference(volume_pred, volume_gt)
    return {
        "volume_gt_ml": volume_gt,
        "volume_pred_ml": volume_pred,
        "volume_diff_ml": volume_pred - volume_gt,
        "vd": vd,
        "vd_abs": abs(vd) if vd is not None else None,
    }


def _null_reasons(result: dict[str, Any], c: Counts, *, prob_given: bool) -> dict[str, str]:
    """Why each ``None`` in `result` is ``None``."""
    pred_empty, gt_empty = c.tp + c.fp == 0, c.tp + c.fn == 0
    distance_reason = surface.empty_surface_reason(pred_empty, gt_empty)
    reasons = {
        "sensitivity": _REFERENCE_EMPTY,
        "specificity": "reference covers the whole volume (TN + FP = 0)",
        "ppv": "prediction is empty (TP + FP = 0)",
        "vd": "reference volume is 0",
        "vd_abs": "reference volume is 0",
        "apr": _REFERENCE_EMPTY if prob_given else "no probability map given",
        "ltpr": "no reference lesions",
        "lfpr": "no predicted lesions",
        "assd_mm": distance_reason,
        "hd_mm": distance_reason,
        "hd95_mm": distance_reason,
    }
    return {key: reasons[key] for key, value in result.items() if value is None}


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise InvalidInputError(
            f"{name_a} shape {a.shape} differs from {name_b} shape {b.shape}: they must share one grid"
        )


def _check_prob_pair(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prob = check_probability(prob)
    gt = as_binary_mask(gt, name="reference")
    _check_same_shape(prob, gt, "probability map", "reference")
    return prob, gt


def _threshold_counts(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (decreasing) with the TP and FP counts of ``prob >= threshold``; `gt` not empty.

    One sort: each non-zero probability's bit pattern (order-preserving for non-negative floats, whose
    sign bit is 0) shifted left by one, with the reference label in the freed lowest bit.
    """
    n_positive = int(np.count_nonzero(gt))
    nonzero = prob > 0
    uint = np.uint32 if prob.dtype == np.float32 else np.uint64
    keys = (prob[nonzero].view(uint) << uint(1)) | gt[nonzero].view(np.uint8).astype(uint)
    keys = np.sort(keys)[::-1]
    values = keys >> uint(1)
    run_ends = np.append(np.flatnonzero(values[1:] != values[:-1]), keys.size - 1) if keys.size else np.empty(0, int)
    tps = np.cumsum(keys & uint(1), dtype=np.int64)[run_ends]
    fps = run_ends + 1 - tps
    thresholds = values[run_ends].view(prob.dtype).astype(np.float64)
    n_zero = prob.size - keys.size
    if n_zero:  # threshold 0 takes every voxel: all positives, all negatives
        thresholds = np.append(thresholds, 0.0)
        tps = np.append(tps, n_positive)
        fps = np.append(fps, prob.size - n_positive)
    return thresholds, tps.astype(np.float64), fps.astype(np.float64)
