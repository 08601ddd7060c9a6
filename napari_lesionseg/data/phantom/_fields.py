"""Smooth random fields on an axis-aligned grid, defined in world millimetres.

A field is a cubic B-spline whose random coefficients sit on a fixed world lattice, so one seed gives
the same field at any voxel spacing or field of view. The grid is separable, so the field is three
small matrix products instead of a 3D interpolation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Grid", "smooth_field"]

#: The lattice of coefficients spans this cube (mm), larger than any head.
_LATTICE_HALF_WIDTH_MM = 240.0
#: Standard deviation of a cubic B-spline sum of unit-variance coefficients at a knot, in 3D.
_BSPLINE_STD_3D = (4 / 9 + 2 / 36) ** 1.5


class Grid:
    """World coordinates (mm) of the voxel centres along the three array axes.

    Args:
        axes: for each array axis, the world coordinate (mm) of each voxel centre along it.
        world_axes: for each array axis, the world axis (0 = x, 1 = y, 2 = z) it runs along.
    """

    def __init__(self, axes: tuple[np.ndarray, np.ndarray, np.ndarray], world_axes: tuple[int, int, int]):
        self.axes = tuple(np.asarray(a, dtype=np.float64) for a in axes)
        self.world_axes = world_axes

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a) for a in self.axes)

    def world(self, world_axis: int) -> np.ndarray:
        """The world coordinate `world_axis` (0 = x, 1 = y, 2 = z) of every voxel, broadcastable to the grid."""
        array_axis = self.world_axes.index(world_axis)
        shape = [1, 1, 1]
        shape[array_axis] = -1
        return self.axes[array_axis].reshape(shape)


def smooth_field(grid: Grid, rng: np.random.Generator, knot_spacing_mm: float, std: float = 1.0) -> np.ndarray:
    """A zero-mean random field with about `std` standard deviation that varies over `knot_spacing_mm`.

    Args:
        grid: where to evaluate the field.
        rng: source of the coefficients; the number drawn does not depend on the grid.
        knot_spacing_mm: distance between B-spline knots: the field's correlation length.
        std: standard deviation of the field at the knots.

    Returns:
        float32 array of `grid.shape`.
    """
    knots = np.arange(-_LATTICE_HALF_WIDTH_MM, _LATTICE_HALF_WIDTH_MM + knot_spacing_mm / 2, knot_spacing_mm)
    coefficients = rng.standard_normal((len(knots),) * 3) * (std / _BSPLINE_STD_3D)
    # Coefficients are indexed (x, y, z); reorder to the grid's array axes.
    field = np.transpose(coefficients, grid.world_axes)
    for array_axis, coords in enumerate(grid.axes):
        near = (knots > coords.min() - 2 * knot_spacing_mm) & (knots < coords.max() + 2 * knot_spacing_mm)
        basis = _cubic_bspline((coords[:, None] - knots[None, near]) / knot_spacing_mm)
        field = np.compress(near, field, axis=array_axis)
        field = np.moveaxis(np.tensordot(basis, field, axes=([1], [array_axis])), 0, array_axis)
    return field.astype(np.float32)


def _cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline kernel, support [-2, 2]."""
    t = np.abs(t)
    near = 2 / 3 - t**2 + t**3 / 2
    far = (2 - t) ** 3 / 6
    return np.where(t < 1, near, np.where(t < 2, far, 0.0))
