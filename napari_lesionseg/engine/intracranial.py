"""Roughly where the brain is, so that bright tissue outside the skull is never reported as lesion.

A raw clinical FLAIR with skull shows bright tissue around the head: the parotid glands and neck
fat at the skull base, the temporal fat and scalp beside the ears. A network that learned lesions
on brains marks some of it (on a held-out raw study, most of the predicted volume lay there). MS
lesions lie in the brain, so the prediction entry point reports none outside this estimate.

The estimate, on the model's grid of the FLAIR: tissue is what lies above the dark classes (CSF,
bone, air) inside the head foreground, cut at Otsu's threshold but never above `TISSUE_FRACTION` of
the median head intensity (a skull-stripped brain has no dark class for Otsu to find); an erosion
by `SEPARATION_MM` cuts the thin bridges between brain and scalp across the dark skull; the largest
piece left is the brain, with any other piece of at least `KEEP_SHARE` of its size; it is grown
back by `SEPARATION_MM + MARGIN_MM` and its holes (ventricles, sulci) are filled.

It errs towards too much brain, which only leaves false positives where they were. An estimate
that no head could give (under `MIN_VOLUME_ML`, as in a small crop or a test volume, or a piece
that is not most of the tissue) is not used: then nothing is removed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "KEEP_SHARE",
    "MARGIN_MM",
    "MIN_TISSUE_SHARE",
    "MIN_VOLUME_ML",
    "SEPARATION_MM",
    "TISSUE_FRACTION",
    "intracranial_region",
    "otsu_threshold",
]

#: Erosion radius (mm) that separates the brain from the scalp across the dark skull and CSF.
SEPARATION_MM = 4.0
#: Extra growth (mm) beyond the eroded brain's border, so cortex and juxtacortical lesions stay inside.
MARGIN_MM = 6.0
#: Smallest region (mL) taken for a brain; an adult brain is about 1,100-1,500 mL.
MIN_VOLUME_ML = 500.0
#: The tissue threshold is at most this share of the median head intensity (CSF and bone lie far below on FLAIR).
TISSUE_FRACTION = 0.5
#: Pieces left by the erosion that are at least this share of the largest are kept with it: a field of
#: view down to the shoulders may hold a neck larger than the brain, and a cerebellum cut off by the erosion
#: is still brain (on the patients and phantoms measured, every other piece was under 0.1 mL).
KEEP_SHARE = 0.1
#: Share of the tissue voxels the brain's pieces must hold to be trusted.
MIN_TISSUE_SHARE = 0.35


def intracranial_region(flair: np.ndarray, foreground: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray | None:
    """The voxels that may hold a lesion (a bool array like `flair`), or None when no brain is found.

    `flair` is the FLAIR on any grid with voxel size `spacing` (mm), `foreground` its head voxels.
    """
    values = flair[foreground]
    if values.size == 0 or np.ptp(values) == 0:
        return None
    tissue = foreground & (flair > min(otsu_threshold(values), TISSUE_FRACTION * float(np.median(values))))
    core = _eroded(tissue, spacing, SEPARATION_MM)
    labels, count = ndi.label(core)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    brain = sizes[labels] >= KEEP_SHARE * sizes.max()
    region = ndi.binary_fill_holes(_grown(brain, spacing, SEPARATION_MM + MARGIN_MM))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    held = np.count_nonzero(region & tissue) / max(1, np.count_nonzero(tissue))
    if np.count_nonzero(region) * voxel_ml < MIN_VOLUME_ML or held < MIN_TISSUE_SHARE:
        return None
    return region


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of `values`: the cut that maximises the between-class variance of the two sides."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def _eroded(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """`mask` eroded by a ball of `radius_mm` (voxels farther than that from the outside)."""
    return ndi.distance_transform_edt(mask, sampling=spacing) > radius_mm


def _grown(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """`mask` dilated by a ball of `radius_mm`."""
    return ndi.distance_transform_edt(~mask, sampling=spacing) <= radius_mm
