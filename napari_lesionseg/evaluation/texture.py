"""White-matter texture: how much a scan varies inside one tissue, and over how many voxels.

A rendered tissue is flat apart from white noise; a real one varies by a few per cent over a few mm
(microstructure, residual bias) and its noise is correlated between neighbours, because the scan was
reconstructed, registered and resampled before a network sees it. `white_matter_texture` puts numbers on
both on the grid the network sees: the high-pass residual (the image minus its Gaussian blur) over
the white matter's median, and the residual's correlation with its next voxel along each axis.

Example:
    >>> white_matter_texture(flair, tissues["wm"])  # doctest: +SKIP
    Texture(relative_sd=0.069, neighbour_correlation=(0.475, 0.692, 0.581))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Texture", "white_matter_texture"]

#: Gaussian sigma (voxels) of the blur subtracted to leave the fine texture.
HIGH_PASS_SIGMA = 2.0
#: Voxels peeled off the white-matter mask, so tissue borders do not count as texture.
_EROSION = 2
_MIN_VOXELS = 100


class Texture(NamedTuple):
    """Fine variation inside a tissue: its size relative to the tissue's median, and its neighbour correlation."""

    relative_sd: float
    neighbour_correlation: tuple[float, float, float]


def white_matter_texture(image: np.ndarray, white_matter: np.ndarray) -> Texture:
    """The high-pass residual of `image` inside the eroded `white_matter`: SD / median, and lag-1 correlation per axis.

    NaN where fewer than 100 voxels are left after erosion.
    """
    image = np.asarray(image, dtype=np.float32)
    inside = ndi.binary_erosion(np.asarray(white_matter, dtype=bool), iterations=_EROSION)
    for axis in range(3):  # the last voxel along an axis has no next neighbour
        inside[(slice(None),) * axis + (-1,)] = False
    if np.count_nonzero(inside) < _MIN_VOXELS:
        return Texture(float("nan"), (float("nan"),) * 3)
    residual = image - ndi.gaussian_filter(image, HIGH_PASS_SIGMA)
    values = residual[inside]
    median = float(np.median(image[inside]))
    correlations = tuple(
        float(np.corrcoef(values, np.roll(residual, -1, axis=axis)[inside])[0, 1]) for axis in range(3)
    )
    return Texture(float(np.std(values)) / median if median > 0 else float("nan"), correlations)
