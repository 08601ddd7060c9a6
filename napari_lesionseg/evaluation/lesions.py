"""Lesions as connected components: lesion-wise detection rates, a per-lesion table, confusion maps.

The lesion-wise rates follow the ISBI 2015 challenge (Carass et al., NeuroImage 2017; Hashemi et al.
2018, Sec. IV.A), where a lesion counts as detected as soon as one voxel overlaps:

* ``LTPR`` = reference lesions that overlap at least one predicted voxel / reference lesions;
* ``LFPR`` = predicted lesions that overlap no reference voxel / predicted lesions.

A lesion is a connected component of a mask. `connectivity` is scipy's: 1 joins voxels that share a
face (6 neighbours), 2 also an edge (18), 3 also a corner (26). The papers do not state the
neighbourhood; the default, 3, is MATLAB `bwconncomp`'s 3-D default (the ISBI evaluation software is
MATLAB). That is an assumption, not checked against the challenge's code.

Confusion maps use the display labels of `constants` (TP, FN, FP; colours of the paper's Fig. 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_lesionseg.constants import FN, FP, TP
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.evaluation._masks import check_spacing_mm, require_bool_mask, require_mask_pair

__all__ = [
    "DEFAULT_CONNECTIVITY",
    "Lesion",
    "LesionMatch",
    "label_lesions",
    "match_lesions",
    "lesion_table",
    "confusion_map",
    "lesion_confusion_map",
]

#: 26-connectivity (faces, edges and corners), see the module docstring.
DEFAULT_CONNECTIVITY = 3


@dataclass(frozen=True)
class LesionMatch:
    """Labelled reference and predicted lesions and which of them overlap the other mask.

    Attributes:
        gt_labels: int32 (Z, Y, X) labels of the reference lesions, 1..n_gt (0 = background).
        pred_labels: int32 (Z, Y, X) labels of the predicted lesions, 1..n_pred.
        gt_detected: bool (n_gt,); entry i says whether reference lesion i + 1 overlaps the prediction.
        pred_hits: bool (n_pred,); entry i says whether predicted lesion i + 1 overlaps the reference.
        connectivity: the connectivity used for labelling (1, 2 or 3).
    """

    gt_labels: np.ndarray
    pred_labels: np.ndarray
    gt_detected: np.ndarray
    pred_hits: np.ndarray
    connectivity: int

    @property
    def n_gt(self) -> int:
        return int(self.gt_detected.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_hits.size)

    @property
    def ltpr(self) -> float | None:
        """Lesion-wise true positive rate; ``None`` without reference lesions."""
        return float(self.gt_detected.mean()) if self.n_gt else None

    @property
    def lfpr(self) -> float | None:
        """Lesion-wise false positive rate; ``None`` without predicted lesions."""
        return float(1.0 - self.pred_hits.mean()) if self.n_pred else None


@dataclass(frozen=True)
class Lesion:
    """One row of the per-lesion table.

    Attributes:
        source: ``"reference"`` or ``"prediction"``.
        label: the lesion's label in its source's labelling (1-based).
        status: ``"TP"`` (overlaps the other mask), ``"FN"`` (missed reference lesion) or ``"FP"``.
        n_voxels: size in voxels.
        volume_ml: size in millilitres.
        centroid_voxel: centre of mass as (Z, Y, X) voxel indices.
        centroid_world: centre of mass in mm through the affine (x, y, z), or ``None`` without one.
        mean_prob: mean probability over the lesion, or ``None`` without a probability map.
        max_prob: maximum probability over the lesion, or ``None`` without a probability map.
    """

    source: str
    label: int
    status: str
    n_voxels: int
    volume_ml: float
    centroid_voxel: tuple[float, float, float]
    centroid_world: tuple[float, float, float] | None
    mean_prob: float | None
    max_prob: float | None

    def as_row(self) -> dict[str, object]:
        """A flat dict (one column per coordinate) for CSV files and tables."""
        world = self.centroid_world or (None, None, None)
        return {
            "source": self.source,
            "label": self.label,
            "status": self.status,
            "n_voxels": self.n_voxels,
            "volume_ml": self.volume_ml,
            **dict(zip(("centroid_z", "centroid_y", "centroid_x"), self.centroid_voxel)),
            **dict(zip(("world_x_mm", "world_y_mm", "world_z_mm"), world)),
            "mean_prob": self.mean_prob,
            "max_prob": self.max_prob,
        }


def label_lesions(mask: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY) -> tuple[np.ndarray, int]:
    """Connected components of a boolean (Z, Y, X) mask: int32 labels 1..n (0 = background) and n."""
    mask = require_bool_mask(mask, "mask")
    if connectivity not in (1, 2, 3):
        raise InvalidInputError(f"connectivity must be 1 (6 neighbours), 2 (18) or 3 (26), got {connectivity!r}")
    structure = ndimage.generate_binary_structure(3, connectivity)
    labels = np.zeros(mask.shape, dtype=np.int32)
    box = _bounding_box(mask)  # labelling only the box is several times faster on a whole brain
    count = ndimage.label(mask[box], structure=structure, output=labels[box])
    return labels, int(count)


def match_lesions(pred: np.ndarray, gt: np.ndarray, *, connectivity: int = DEFAULT_CONNECTIVITY) -> LesionMatch:
    """Label both masks and find which lesions overlap the other mask (ISBI 2015 detection rule)."""
    pred, gt = require_mask_pair(pred, gt)
    pred_labels, n_pred = label_lesions(pred, connectivity)
    gt_labels, n_gt = label_lesions(gt, connectivity)
    overlap = np.flatnonzero(pred & gt)
    gt_detected = np.bincount(gt_labels.ravel()[overlap], minlength=n_gt + 1)[1:] > 0
    pred_hits = np.bincount(pred_labels.ravel()[overlap], minlength=n_pred + 1)[1:] > 0
    return LesionMatch(gt_labels, pred_labels, gt_detected, pred_hits, connectivity)


def lesion_table(
    match: LesionMatch,
    *,
    spacing: Sequence[float],
    prob: np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> list[Lesion]:
    """One row per reference lesion (TP or FN), then one per predicted lesion (TP or FP).

    Args:
        match: the result of :func:`match_lesions`.
        spacing: voxel size in mm along (Z, Y, X), for the volumes.
        prob: optional probability map on the same grid, for the mean and max probability per lesion.
        affine: optional 4x4 matrix from (Z, Y, X) voxel indices to world mm, for `centroid_world`.
    """
    voxel_ml = float(np.prod(check_spacing_mm(spacing))) / 1000.0
    if prob is not None and np.shape(prob) != match.gt_labels.shape:
        raise InvalidInputError(
            f"probability map shape {np.shape(prob)} differs from mask shape {match.gt_labels.shape}"
        )
    if affine is not None:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise InvalidInputError(f"affine must be a 4x4 matrix, got shape {affine.shape}")
    sources = (
        ("reference", match.gt_labels, np.where(match.gt_detected, "TP", "FN")),
        ("prediction", match.pred_labels, np.where(match.pred_hits, "TP", "FP")),
    )
    return [
        row
        for source, labels, statuses in sources
        for row in _lesion_rows(source, labels, statuses, voxel_ml, prob, affine)
    ]


def confusion_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Voxel-wise uint8 map: `TP` where both masks are set, `FN` where only the reference, `FP` only the prediction."""
    pred, gt = require_mask_pair(pred, gt)
    lookup = np.array([0, FN, FP, TP], dtype=np.uint8)  # index = gt + 2 * pred
    return lookup[gt.view(np.uint8) + 2 * pred.view(np.uint8)]


def lesion_confusion_map(match: LesionMatch) -> np.ndarray:
    """Lesion-wise uint8 map: each whole lesion takes its detection status (TP, FN or FP).

    Detected reference lesions and the predicted lesions that hit them are TP, missed reference lesions
    FN, predicted lesions that touch no reference voxel FP. Overlapping voxels are TP on both sides, so
    the two labellings combine without conflict.
    """
    gt_lookup = np.concatenate([[0], np.where(match.gt_detected, TP, FN)]).astype(np.uint8)
    pred_lookup = np.concatenate([[0], np.where(match.pred_hits, TP, FP)]).astype(np.uint8)
    return np.maximum(gt_lookup[match.gt_labels], pred_lookup[match.pred_labels])


def _lesion_rows(
    source: str,
    labels: np.ndarray,
    statuses: np.ndarray,
    voxel_ml: float,
    prob: np.ndarray | None,
    affine: np.ndarray | None,
) -> list[Lesion]:
    """Per-lesion statistics from one pass over the labelled voxels (np.bincount, no loop over the volume)."""
    n = statuses.size
    if n == 0:
        return []
    flat = np.flatnonzero(labels)
    ids = labels.ravel()[flat]
    counts = np.bincount(ids, minlength=n + 1)[1:]
    coords = np.unravel_index(flat, labels.shape)
    centroids = np.stack([np.bincount(ids, weights=c, minlength=n + 1)[1:] / counts for c in coords], axis=1)
    world = centroids @ affine[:3, :3].T + affine[:3, 3] if affine is not None else None
    mean_prob = max_prob = None
    if prob is not None:
        values = np.asarray(prob).ravel()[flat].astype(np.float64)
        mean_prob = np.bincount(ids, weights=values, minlength=n + 1)[1:] / counts
        max_prob = np.full(n + 1, -np.inf)
        np.maximum.at(max_prob, ids, values)
        max_prob = max_prob[1:]
    return [
        Lesion(
            source=source,
            label=i + 1,
            status=str(statuses[i]),
            n_voxels=int(counts[i]),
            volume_ml=float(counts[i]) * voxel_ml,
            centroid_voxel=_floats(centroids[i]),
            centroid_world=_floats(world[i]) if world is not None else None,
            mean_prob=float(mean_prob[i]) if mean_prob is not None else None,
            max_prob=float(max_prob[i]) if max_prob is not None else None,
        )
        for i in range(n)
    ]


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box holding every True voxel (empty slices for an empty mask)."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(hits[0], hits[-1] + 1) if hits.size else slice(0, 0))
    return tuple(box)


def _floats(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


