"""Review of a prediction against a reference mask: metrics, lesion table, confusion maps, PR curve.

The Lesion review dock computes one :class:`Review` per (prediction, reference) pair, off the GUI
thread, and shows its parts; everything numerical lives here and in `metrics`/`lesions`.

* Masks may come from any labels layer: every nonzero voxel is lesion (a rater may paint label 2).
* With the run's probability map the review also has APR, the precision-recall curve (thinned for
  drawing) and each lesion's mean probability; without one those stay ``None``.
* Lesion rows are `lesions.lesion_table`'s: the reference lesions (TP or FN), then the predicted
  lesions (TP or FP). :func:`lesion_voxels` gives the voxels of a row, to accept or reject it in a
  corrected mask; :func:`lesion_coverage` says how much of each row a corrected mask keeps.

Example:
    >>> review = review_masks(pred, reference, spacing=(1.0, 1.0, 1.0), prob=prob)  # doctest: +SKIP
    >>> review.metrics["dsc"], len(review.lesions), review.confusion("lesion").max()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation.lesion_size import drop_small_lesions
from napari_lesionseg.evaluation.lesions import (
    DEFAULT_CONNECTIVITY,
    Lesion,
    LesionMatch,
    confusion_map,
    lesion_confusion_map,
    lesion_table,
    match_lesions,
)
from napari_lesionseg.evaluation.metrics import as_binary_mask, compute_metrics, precision_recall_curve
from napari_lesionseg.vocabulary import CONFUSION_MODES

__all__ = [
    "REVIEW_METRICS",
    "Review",
    "lesion_coverage",
    "lesion_mask",
    "lesion_voxels",
    "review_masks",
    "thin_curve",
]

#: The metrics the review table shows, in order (keys of `metrics.compute_metrics`).
REVIEW_METRICS: tuple[str, ...] = (
    "dsc", "sensitivity", "specificity", "ppv", "f2", "apr", "ltpr", "lfpr", "vd", "assd_mm", "hd95_mm",
)  # fmt: skip
#: Points kept of the precision-recall curve for drawing (the exact curve can have a point per voxel).
CURVE_POINTS = 400


@dataclass(frozen=True, eq=False)
class Review:
    """Everything the review shows for one prediction/reference pair.

    Attributes:
        metrics: `metrics.compute_metrics` of the prediction against the reference.
        match: the labelled lesions of both masks and which of them were detected.
        lesions: one row per reference lesion, then one per predicted lesion.
        voxel_map: uint8 voxel-wise confusion map (`constants.TP`, `FN`, `FP`).
        lesion_map: uint8 lesion-wise confusion map (whole lesions take their status).
        curve: ``(recall, precision)`` of the thinned PR curve, or None without a probability map
            or with an empty reference.
        operating_point: ``(recall, precision)`` of the prediction itself, or None when undefined.
    """

    metrics: dict[str, Any]
    match: LesionMatch
    lesions: list[Lesion]
    voxel_map: np.ndarray
    lesion_map: np.ndarray
    curve: tuple[np.ndarray, np.ndarray] | None
    operating_point: tuple[float, float] | None

    def confusion(self, mode: str) -> np.ndarray:
        """The confusion map of `mode` (``"voxel"`` or ``"lesion"``)."""
        if mode not in CONFUSION_MODES:
            raise InvalidInputError(f"confusion mode must be one of {CONFUSION_MODES}, got {mode!r}")
        return self.voxel_map if mode == "voxel" else self.lesion_map


def lesion_mask(array: np.ndarray, name: str) -> np.ndarray:
    """Boolean (Z, Y, X) lesion mask of a labels array: every nonzero voxel is lesion."""
    array = np.asarray(array)
    return as_binary_mask(array if array.dtype == bool else array != 0, name=name)


def review_masks(
    pred: np.ndarray,
    reference: np.ndarray,
    *,
    spacing: Sequence[float],
    prob: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    connectivity: int = DEFAULT_CONNECTIVITY,
    pred_name: str = "prediction",
    reference_name: str = "reference",
    min_lesion_mm3: float = 0.0,
) -> Review:
    """Compare a prediction with a reference on one grid.

    Args:
        pred: predicted labels (Z, Y, X); nonzero is lesion.
        reference: reference labels on the same grid (ground truth, an expert's or a corrected mask).
        spacing: voxel size in mm along (Z, Y, X).
        prob: the probability map the prediction came from, for APR, the PR curve and the mean
            probability per lesion.
        affine: (Z, Y, X) voxel -> world mm matrix, for the lesions' world centroids.
        connectivity: lesion connectivity (see `lesions`).
        pred_name, reference_name: how error messages call the two masks (layer names are best).
        min_lesion_mm3: predicted lesions smaller than this are left out first (`lesion_size`; the
            Inference dock's setting, default `constants.MIN_LESION_MM3`); 0 keeps every one.

    Raises:
        InvalidInputError: a mask is not 3-D, or the masks (or the probability map) differ in shape.
    """
    pred = lesion_mask(pred, pred_name)
    reference = lesion_mask(reference, reference_name)
    if pred.shape != reference.shape:
        raise InvalidInputError(
            f"{pred_name!r} has shape {pred.shape} but {reference_name!r} has shape {reference.shape}: "
            "review needs two masks on one grid"
        )
    if prob is not None and np.shape(prob) != pred.shape:
        raise InvalidInputError(
            f"the probability map has shape {np.shape(prob)} but {pred_name!r} has shape {pred.shape}"
        )
    if min_lesion_mm3:
        pred = drop_small_lesions(pred, spacing, min_lesion_mm3, connectivity)
    metrics = compute_metrics(pred, reference, spacing=spacing, prob=prob, connectivity=connectivity)
    match = match_lesions(pred, reference, connectivity=connectivity)
    recall, precision = metrics["sensitivity"], metrics["ppv"]
    return Review(
        metrics=metrics,
        match=match,
        lesions=lesion_table(match, spacing=spacing, prob=prob, affine=affine),
        voxel_map=confusion_map(pred, reference),
        lesion_map=lesion_confusion_map(match),
        curve=_curve(prob, reference),
        operating_point=(recall, precision) if recall is not None and precision is not None else None,
    )


def lesion_voxels(review: Review, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel indices ``(z, y, x)`` of lesion row `index` (its own component in its source mask)."""
    lesion = review.lesions[index]
    return np.nonzero(_labels_of(review, lesion) == lesion.label)  # type: ignore[return-value]


def lesion_coverage(review: Review, mask: np.ndarray) -> np.ndarray:
    """Fraction (0..1) of each lesion row's voxels that lie inside `mask` (nonzero), in row order.

    Used to show whether a corrected mask kept (1), removed (0) or partly kept a candidate.
    """
    mask = lesion_mask(mask, "corrected mask")
    if mask.shape != review.voxel_map.shape:
        raise InvalidInputError(
            f"the corrected mask has shape {mask.shape} but the reviewed masks have {review.voxel_map.shape}"
        )
    inside = {
        "reference": np.bincount(review.match.gt_labels[mask], minlength=review.match.n_gt + 1),
        "prediction": np.bincount(review.match.pred_labels[mask], minlength=review.match.n_pred + 1),
    }
    return np.array([inside[lesion.source][lesion.label] / lesion.n_voxels for lesion in review.lesions])


def thin_curve(x: np.ndarray, y: np.ndarray, max_points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about `max_points` points of a curve whose `x` is monotonic, keeping both ends.

    Half the points are spaced evenly along the curve's index, half evenly along `x`: a PR curve
    has most of its thresholds among the many low-probability voxels, so index spacing alone would
    leave the high-precision part (where the operating point usually is) with a handful of points.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.size <= max_points:
        return x, y
    half = max(2, max_points // 2)
    by_index = np.linspace(0, x.size - 1, half).round().astype(int)
    increasing = x[-1] >= x[0]
    ordered = x if increasing else -x
    targets = np.linspace(ordered[0], ordered[-1], half)
    by_x = np.clip(np.searchsorted(ordered, targets), 0, x.size - 1)
    keep = np.unique(np.concatenate([by_index, by_x, [0, x.size - 1]]))
    return x[keep], y[keep]


def _curve(prob: np.ndarray | None, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if prob is None or not reference.any():
        return None
    precision, recall, _ = precision_recall_curve(prob, reference)
    return thin_curve(recall, precision)


def _labels_of(review: Review, lesion: Lesion) -> np.ndarray:
    return review.match.gt_labels if lesion.source == "reference" else review.match.pred_labels
