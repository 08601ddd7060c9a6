"""One row per lesion for a reader: each reference lesion (found or missed) with the predicted lesions
that touch it, then each false-positive prediction.

`lesions.lesion_table` lists a found lesion twice (as a reference and as a predicted component); a
reader wants it once, with both volumes. A row's voxels (`row_voxels`) are what Accept/Reject edit in
a corrected mask that starts as a copy of the prediction: the predicted components of a found lesion
or of a false positive, the reference component of a missed one.

Example:
    >>> rows = review_rows(review)                                           # doctest: +SKIP
    >>> small = false_positives_under(rows, 0.003)  # FP rows under 3 mm^3    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation.lesions import Lesion
from napari_lesionseg.evaluation.review import Review, lesion_mask

__all__ = ["ReviewRow", "false_positives_under", "review_rows", "row_coverage", "row_voxels"]


@dataclass(frozen=True, eq=False)
class ReviewRow:
    """A lesion as the reader sees it.

    Attributes:
        status: ``"TP"`` (a reference lesion the prediction touches), ``"FN"`` (missed) or ``"FP"``.
        reference: the reference lesion (None for a false positive).
        predicted: the predicted lesions of this row (none for a missed lesion).
    """

    status: str
    reference: Lesion | None
    predicted: tuple[Lesion, ...]

    @property
    def reference_ml(self) -> float | None:
        """Volume of the reference lesion in mL (None for a false positive)."""
        return None if self.reference is None else self.reference.volume_ml

    @property
    def predicted_ml(self) -> float | None:
        """Total volume of the row's predicted lesions in mL (None for a missed lesion)."""
        return sum(p.volume_ml for p in self.predicted) if self.predicted else None

    @property
    def centroid_voxel(self) -> tuple[float, float, float]:
        """Where to look: the reference lesion's centre, else the largest predicted lesion's."""
        if self.reference is not None:
            return self.reference.centroid_voxel
        return max(self.predicted, key=lambda p: p.n_voxels).centroid_voxel

    @property
    def mean_prob(self) -> float | None:
        """Mean probability over the row's lesion (the reference lesion when there is one)."""
        lesion = self.reference if self.reference is not None else max(self.predicted, key=lambda p: p.n_voxels)
        return lesion.mean_prob

    @property
    def extent_voxels(self) -> int:
        """Voxels of the row's lesion (reference, else predicted), for zooming to it."""
        return self.reference.n_voxels if self.reference is not None else sum(p.n_voxels for p in self.predicted)


def review_rows(review: Review) -> list[ReviewRow]:
    """Reference lesions in label order (TP or FN, with the predicted lesions touching them), then false positives."""
    references = [lesion for lesion in review.lesions if lesion.source == "reference"]
    predicted = {lesion.label: lesion for lesion in review.lesions if lesion.source == "prediction"}
    touching = _predicted_touching(review)
    rows = [
        ReviewRow(ref.status, ref, tuple(predicted[label] for label in touching.get(ref.label, ())))
        for ref in references
    ]
    rows += [ReviewRow("FP", None, (lesion,)) for lesion in predicted.values() if lesion.status == "FP"]
    return rows


def row_voxels(review: Review, row: ReviewRow) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel indices ``(z, y, x)`` Accept/Reject edit: the predicted components, or a missed lesion's."""
    return np.nonzero(_row_mask(review, row))  # type: ignore[return-value]


def row_coverage(review: Review, rows: list[ReviewRow], mask: np.ndarray) -> np.ndarray:
    """Fraction (0..1) of each row's lesion that `mask` keeps, in row order (1 kept, 0 removed).

    A row with a reference lesion is measured on it (how much of the true lesion the corrected mask
    covers); a false positive on its predicted voxels.
    """
    mask = lesion_mask(mask, "corrected mask")
    if mask.shape != review.voxel_map.shape:
        raise InvalidInputError(
            f"the corrected mask has shape {mask.shape} but the reviewed masks have {review.voxel_map.shape}"
        )
    kept_ref = np.bincount(review.match.gt_labels[mask], minlength=review.match.n_gt + 1)
    kept_pred = np.bincount(review.match.pred_labels[mask], minlength=review.match.n_pred + 1)
    fractions = []
    for row in rows:
        if row.reference is not None:
            fractions.append(int(kept_ref[row.reference.label]) / row.reference.n_voxels)
        else:
            kept = sum(int(kept_pred[p.label]) for p in row.predicted)
            fractions.append(kept / sum(p.n_voxels for p in row.predicted))
    return np.array(fractions, dtype=float)


def false_positives_under(rows: list[ReviewRow], max_ml: float) -> list[int]:
    """Indices of the false-positive rows smaller than `max_ml` (for a bulk reject of specks)."""
    return [i for i, row in enumerate(rows) if row.status == "FP" and row.predicted_ml < max_ml]


def _predicted_touching(review: Review) -> dict[int, tuple[int, ...]]:
    """Reference label -> labels of the predicted lesions overlapping it."""
    both = (review.match.gt_labels > 0) & (review.match.pred_labels > 0)
    pairs = np.unique(np.stack([review.match.gt_labels[both], review.match.pred_labels[both]]), axis=1)
    touching: dict[int, list[int]] = {}
    for reference, predicted in pairs.T:
        touching.setdefault(int(reference), []).append(int(predicted))
    return {reference: tuple(labels) for reference, labels in touching.items()}


def _row_mask(review: Review, row: ReviewRow) -> np.ndarray:
    if row.predicted:
        return np.isin(review.match.pred_labels, [p.label for p in row.predicted])
    return review.match.gt_labels == row.reference.label
