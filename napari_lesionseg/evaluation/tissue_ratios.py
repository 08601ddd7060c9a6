"""Tissue-to-white-matter intensity ratios per modality, and a crude tissue estimate for scans without one.

The ratios say how a scan's contrast looks: on FLAIR, lesion / white matter near 1.4 means faint
lesions, near 1.9 conspicuous ones; grey / white matter near 1.2 means a bright cortex. They are
medians, so a few misclassified voxels do not move them.

Real scans come without a tissue segmentation, so `estimate_tissues` makes a crude one: a 3-class
k-means on the T1w intensities inside the brain, lesion voxels left out. It is crude on purpose and
is used for real and generated subjects alike (`scripts/tissue_ratios.py`, the generator's tests),
so the two are compared with the same bias (partial volume at the grey/white border, the CSF class
holding the brain's dark rim).

Example:
    >>> tissues = estimate_tissues(images["T1w"], brain, lesion)  # doctest: +SKIP
    >>> tissue_ratios(images, tissues)["FLAIR"]["lesion"]  # doctest: +SKIP
    1.41
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["RATIO_TISSUES", "estimate_tissues", "tissue_ratios"]

#: The tissues whose median is divided by white matter's, in the order they are reported.
RATIO_TISSUES: tuple[str, ...] = ("lesion", "gm", "csf")
#: Histogram bins of the 1-D k-means: fine enough for float or integer images, fast on any size.
_BINS = 1024
#: Fewest voxels a tissue needs for its median to be reported (otherwise NaN).
_MIN_VOXELS = 10


def tissue_ratios(images: Mapping[str, np.ndarray], tissues: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Median intensity of lesion, grey matter and CSF divided by white matter's, for every image.

    Args:
        images: modality -> image; all on the grid of the tissue masks.
        tissues: "wm", "gm", "csf" and "lesion" -> boolean mask (from `estimate_tissues`, or a
            generator's own labels); a missing or nearly empty one gives NaN.

    Returns:
        modality -> {"lesion", "gm", "csf"} -> ratio to white matter (NaN where undefined).
    """
    masks = {name: np.asarray(mask, dtype=bool) for name, mask in tissues.items()}
    ratios = {}
    for modality, image in images.items():
        image = np.asarray(image)
        wm = _median(image, masks.get("wm"))
        ratios[modality] = {
            name: (_median(image, masks.get(name)) / wm if wm > 0 else float("nan")) for name in RATIO_TISSUES
        }
    return ratios


def estimate_tissues(
    t1w: np.ndarray, brain: np.ndarray, lesion: np.ndarray | None = None, iterations: int = 50
) -> dict[str, np.ndarray]:
    """A crude white/grey matter and CSF segmentation: 3-class k-means on T1w intensities inside `brain`.

    T1w orders the tissues CSF < grey < white matter. The classes are split at the midpoints of the
    three k-means centres (found on a histogram, so it is deterministic and fast); voxels of
    `lesion` are left out of the fit and of every class. This is deliberately simple: partial volume
    and bias fields blur the classes, and it assumes a T1w-like contrast.

    Args:
        t1w: the T1-weighted image.
        brain: boolean brain mask (e.g. the non-zero voxels of a skull-stripped scan).
        lesion: boolean lesion mask, or None.
        iterations: Lloyd iterations of the k-means.

    Returns:
        "wm", "gm", "csf" and "lesion" -> boolean masks (disjoint).
    """
    t1w = np.asarray(t1w, dtype=np.float32)
    lesion = np.zeros(t1w.shape, dtype=bool) if lesion is None else np.asarray(lesion, dtype=bool)
    inside = np.asarray(brain, dtype=bool) & ~lesion & np.isfinite(t1w)
    values = t1w[inside]
    if values.size < 3 * _MIN_VOXELS:
        empty = np.zeros(t1w.shape, dtype=bool)
        return {"wm": empty, "gm": empty.copy(), "csf": empty.copy(), "lesion": lesion}
    low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    centres = _kmeans_1d(np.clip(values, low, high), low, high, iterations)
    csf_gm, gm_wm = (centres[:-1] + centres[1:]) / 2.0
    return {
        "csf": inside & (t1w < csf_gm),
        "gm": inside & (t1w >= csf_gm) & (t1w < gm_wm),
        "wm": inside & (t1w >= gm_wm),
        "lesion": lesion,
    }


def _kmeans_1d(values: np.ndarray, low: float, high: float, iterations: int) -> np.ndarray:
    """Three sorted k-means centres of `values`, fitted on their histogram, started at quantiles."""
    counts, edges = np.histogram(values, bins=_BINS, range=(low, high) if high > low else None)
    centres_of_bins = (edges[:-1] + edges[1:]) / 2.0
    cumulative = np.cumsum(counts) / counts.sum()
    centres = centres_of_bins[np.searchsorted(cumulative, (0.1, 0.45, 0.8))].astype(np.float64)
    for _ in range(iterations):
        labels = np.searchsorted((centres[:-1] + centres[1:]) / 2.0, centres_of_bins)
        updated = centres.copy()
        for k in range(3):
            weight = counts[labels == k].sum()
            if weight:
                updated[k] = (counts[labels == k] * centres_of_bins[labels == k]).sum() / weight
        updated.sort()
        if np.allclose(updated, centres):
            break
        centres = updated
    return centres


def _median(image: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None or np.count_nonzero(mask) < _MIN_VOXELS:
        return float("nan")
    return float(np.median(image[mask]))
