"""Resampling of a modality (or mask) onto another grid, in scanner (world) coordinates.

`load_subject` puts modalities on other grids onto the FLAIR's (with a note saying so), and the
prediction entry point puts the inputs into the model's space and the probability back
(`engine.model_space`). Images are interpolated linearly, masks by nearest neighbour; voxels
outside the moving volume's field of view get the image's background level (`background_level`) or 0 for
masks.

Example:
    >>> t1_on_flair = resample_volume(t1, flair.geometry, kind="image")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from napari_lesionseg.data.geometry import Geometry
    from napari_lesionseg.data.volumes import Volume

__all__ = ["BACKGROUND_PERCENTILE", "background_level", "resample_to_grid", "resample_volume"]

#: Percentile of an image taken as its background, the value outside its field of view.
BACKGROUND_PERCENTILE = 1.0


def resample_to_grid(
    data: np.ndarray, source: Geometry, target: Geometry, *, order: Literal[0, 1] = 1, cval: float | None = None
) -> np.ndarray:
    """Resample a canonical array on `source` onto the canonical grid of `target`.

    Args:
        data: canonical (S, P, L) array of shape ``source.shape``.
        source: the geometry `data` lives on.
        target: the geometry to resample onto.
        order: 1 for linear interpolation (images), 0 for nearest neighbour (masks, labels).
        cval: value outside the source field of view; when None, the background level of `data` (its 1st
            percentile, `background_level`).

    Returns:
        Array of shape ``target.shape``: float32 for ``order=1``, `data`'s dtype for ``order=0``.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), not {order!r}")
    if tuple(data.shape) != source.shape:
        raise ValueError(f"data of shape {tuple(data.shape)} does not fit its source grid {source.shape}")
    # Target voxel -> scanner mm -> source voxel; affine_transform pulls source values at those points.
    target_to_source = np.linalg.inv(source.canonical_affine) @ target.canonical_affine
    if order == 1:
        data = data.astype(np.float32, copy=False)
    fill = background_level(data) if cval is None else float(cval)
    return ndimage.affine_transform(
        data,
        target_to_source[:3, :3],
        offset=target_to_source[:3, 3],
        output_shape=target.shape,
        output=data.dtype,
        order=order,
        mode="constant",
        cval=fill,
        prefilter=False,
    )


def background_level(data: np.ndarray) -> float:
    """The value a scan's background has: its 1st percentile.

    Not the minimum: a registered or spline-resampled skull-stripped scan rings a little below its zero
    background at the brain's edge (under 0.1 % of the voxels of a real one), and a fill at that minimum
    would push the normalisation's foreground threshold below the background, making the whole grid
    foreground.
    """
    return float(np.percentile(data, BACKGROUND_PERCENTILE))


def resample_volume(volume: Volume, target: Geometry, *, kind: Literal["image", "mask"] = "image") -> Volume:
    """A copy of `volume` resampled onto `target` (linear for images, nearest for masks), with that geometry."""
    if kind not in ("image", "mask"):
        raise ValueError(f"kind must be 'image' or 'mask', not {kind!r}")
    order, cval = (1, None) if kind == "image" else (0, 0.0)
    data = resample_to_grid(volume.data, volume.geometry, target, order=order, cval=cval)
    return dataclasses.replace(volume, data=data, geometry=target)
