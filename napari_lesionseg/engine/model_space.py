"""The model's space: a grid at the spacing a network was trained at, covering the reference image.

Prediction runs there (nnU-Net's approach): the subject's canonical volumes are resampled in world
coordinates onto a grid with the model's spacing and the reference (FLAIR) image's directions and
field of view; the fused probability comes back (linear) onto the reference's native grid. Both
grids share their axes, so a model voxel maps to a native one by a per-axis scale and offset.

Example:
    >>> space = model_space(flair.geometry, (2.0, 2.0, 2.0))          # doctest: +SKIP
    >>> stack = to_model(flair.data, flair.geometry, space)            # doctest: +SKIP
    >>> probability = to_native(model_probability, space)              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.resample import resample_to_grid

__all__ = ["COARSE_FACTOR", "SPACING_TOLERANCE", "ModelSpace", "model_space", "to_model", "to_native"]

#: Relative difference of voxel sizes under which an input counts as already in the model's space.
SPACING_TOLERANCE = 0.01
#: An input voxel more than this many times the model's (along any axis) cannot show small lesions.
COARSE_FACTOR = 4.0


@dataclass(frozen=True, eq=False)
class ModelSpace:
    """Where a run's network works, and how that grid sits on the native (reference) grid.

    Attributes:
        native: the reference image's grid, where layers, files and the mask live.
        geometry: the model-space grid (equal to `native` when nothing is resampled); the patch grid
            and the weight sums of the run are on it (napari: ``scale=geometry.spacing``,
            ``translate=geometry.napari_translate``).
        resampled: False when the input already had the model's spacing (the run is unchanged).
    """

    native: Geometry
    geometry: Geometry
    resampled: bool

    @property
    def native_spacing(self) -> tuple[float, float, float]:
        """The reference image's voxel size (mm)."""
        return self.native.spacing

    @property
    def spacing(self) -> tuple[float, float, float]:
        """The model's voxel size (mm)."""
        return self.geometry.spacing

    @property
    def scale(self) -> np.ndarray:
        """Native voxels per model voxel, per canonical axis."""
        return np.asarray(self.spacing) / np.asarray(self.native_spacing)

    @property
    def offset(self) -> np.ndarray:
        """Native voxel coordinates of model voxel 0."""
        return (np.linalg.inv(self.native.canonical_affine) @ self.geometry.canonical_affine)[:3, 3]

    def describe(self) -> str:
        """One line: from which spacing to which, or that the input already had the model's."""
        in_file_order = self.native.orientation[:, 0].astype(int)  # sizes as the FLAIR's file (and FSL) lists them
        native = _mm(self.native.source_spacing)
        model = _mm(np.asarray(self.spacing)[in_file_order])
        if not self.resampled:
            return f"the input has the model's spacing ({model}): nothing was resampled"
        shape = "x".join(str(self.geometry.shape[axis]) for axis in in_file_order)
        return (
            f"ran in the model's space: the inputs were resampled from {native} to {model} "
            f"({shape} voxels) and the probability back to {native}"
        )

    def native_event(self, event: Any, probability: np.ndarray) -> Any:
        """A `ProgressEvent` with its boxes on the native grid and its partial result resampled from `probability`."""
        box = self._native_box(event.box)
        partial = None
        if event.partial is not None:
            partial = self._sample(probability, box[0], tuple(int(n) for n in box[1] - box[0]))
        boxes = (
            np.stack([self._native_box(b) for b in event.patch_boxes]) if len(event.patch_boxes) else event.patch_boxes
        )
        return dataclasses.replace(event, box=box, patch_boxes=boxes, partial=partial)

    def native_slice(self, index: int, axis: int = 0) -> int:
        """The model-space index of native slice `index` along `axis` (to predict its patches first)."""
        position = (index - self.offset[axis]) / self.scale[axis]
        return int(np.clip(round(position), 0, self.geometry.shape[axis] - 1))

    def _native_box(self, box: np.ndarray) -> np.ndarray:
        """The native voxels whose interpolation reads model voxels inside `box` (start, stop)."""
        shape, first, last = np.asarray(self.native.shape), np.asarray(box[0]), np.asarray(box[1])
        start = np.floor((first - 1) * self.scale + self.offset) + 1
        stop = np.ceil(last * self.scale + self.offset)
        start = np.where(first <= 0, 0, start)  # beyond the model grid's edge the nearest voxel is read
        stop = np.where(last >= np.asarray(self.geometry.shape), shape, stop)
        return np.stack([np.clip(start, 0, shape), np.clip(stop, 0, shape)]).astype(np.int64)

    def _sample(self, probability: np.ndarray, start: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The model-space `probability` interpolated (linear) at the native voxels from `start`."""
        if min(shape, default=0) <= 0:
            return np.zeros(shape, np.float32)
        scale = 1.0 / self.scale
        offset = (np.asarray(start) - self.offset) * scale
        return ndimage.affine_transform(
            probability, scale, offset=offset, output_shape=shape, output=np.float32, order=1, mode="nearest",
            prefilter=False,
        )  # fmt: skip


def model_space(native: Geometry, spacing: Sequence[float]) -> ModelSpace:
    """The grid at `spacing` with `native`'s axes covering its field of view (centred), or `native` itself.

    Args:
        native: the reference image's grid.
        spacing: the model's voxel size (mm) along (S, P, L).
    """
    target = np.asarray(spacing, dtype=np.float64)
    current = np.asarray(native.spacing)
    if np.all(np.abs(current - target) <= SPACING_TOLERANCE * target):
        return ModelSpace(native, native, resampled=False)
    shape = [max(1, math.ceil(n * s / t - 1e-6)) for n, s, t in zip(native.shape, current, target)]
    directions = native.canonical_affine[:3, :3] / current
    centre = native.canonical_affine @ np.append((np.asarray(native.shape) - 1) / 2.0, 1.0)
    affine = np.eye(4)
    affine[:3, :3] = directions * target
    affine[:3, 3] = centre[:3] - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return ModelSpace(native, Geometry.from_affine(affine, shape, source_name="model space"), resampled=True)


def to_model(data: np.ndarray, source: Geometry, space: ModelSpace) -> np.ndarray:
    """An image on `source` resampled (linear, world coordinates) onto the model-space grid."""
    if not space.resampled and source.same_grid(space.geometry):
        return data
    return resample_to_grid(data, source, space.geometry, order=1)


def to_native(probability: np.ndarray, space: ModelSpace) -> np.ndarray:
    """A model-space map resampled (linear) back onto the native grid; the edges take the nearest value."""
    if not space.resampled:
        return probability
    return space._sample(probability, np.zeros(3), space.native.shape)


def _mm(spacing: Sequence[float]) -> str:
    return "x".join(f"{s:.2f}" for s in spacing) + " mm"
