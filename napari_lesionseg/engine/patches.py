"""Patch grids over any-size volumes and the paper's test-time augmentation (Sec. III.C).

A :class:`PatchGrid` lists the origins of equally sized, overlapping patches that together cover
every voxel of a ``(Z, Y, X)`` volume. Consecutive origins along an axis are
``int(patch * (1 - overlap))`` voxels apart (at least 1), the same stride as MONAI's
``sliding_window_inference``. Two border policies:

* ``"flush"`` (default): no padding where the volume is at least one patch long; the last patch
  along each axis is moved back so that it ends flush with the border (the MONAI grid). Along an
  axis shorter than the patch, the one patch starts at 0 and reaches past the end: the engine
  feeds zeros there and crops the prediction back to the volume.
* ``"pad"`` (the paper's grid): the volume is padded with half a patch of zeros on both sides
  before laying out a flush grid, so border voxels also fall near the centre of some patch. For a
  128x224x256 volume, 64^3 patches and 50 % overlap this gives the paper's 5x8x9 = 360 patches
  (9x15x17 at 75 %), and with four augmentations the paper's 1,440 predictions and 32 predictions
  per voxel.

Origins are in volume coordinates and may be negative or run past the end under padding;
:meth:`PatchGrid.boxes` clips them for display. Test-time augmentation flips patches: a
180-degree rotation in a plane is a flip of both of its axes, and every flip is its own inverse.

Before a run, `check_workload` refuses a grid whose smallest working memory exceeds the memory
budget (a patch size far beyond the volume) or with more than `MAX_PATCHES` patches, and warns
above `LARGE_GRID_PATCHES` (a high overlap), with the count and the count at the paper's 50 %.

Example:
    >>> grid = make_grid((40, 50, 60), (32, 32, 32), overlap=0.5)
    >>> len(grid), grid.counts
    (18, (2, 3, 3))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch

from napari_lesionseg._memory import format_bytes, memory_budget
from napari_lesionseg.errors import InvalidInputError, LesionSegWarning
from napari_lesionseg.vocabulary import BORDER_MODES

__all__ = [
    "LARGE_GRID_PATCHES",
    "MAX_PATCHES",
    "TTA_SETS",
    "TTA_VARIANTS",
    "PatchGrid",
    "augment",
    "check_overlap",
    "check_workload",
    "invert",
    "make_grid",
    "tta_variants",
]

Border = Literal["flush", "pad"]

#: Spatial axes flipped by each augmentation, as (Z, Y, X) axis numbers.
TTA_VARIANTS: dict[str, tuple[int, ...]] = {
    "identity": (),
    "rot180_yx": (1, 2),  # 180 degrees in the axial plane
    "rot180_zx": (0, 2),  # 180 degrees in the coronal plane
    "rot180_zy": (0, 1),  # 180 degrees in the sagittal plane
    "flip_z": (0,),
    "flip_y": (1,),
    "flip_x": (2,),
    "flip_zyx": (0, 1, 2),
}
#: Named sets of augmentations: none, the paper's four (identity + 180-degree rotation in each
#: plane, Sec. III.C), or all eight mirrorings.
TTA_SETS: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "paper": ("identity", "rot180_yx", "rot180_zx", "rot180_zy"),
    "mirror8": tuple(TTA_VARIANTS),
}

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

#: Above this many patches a run warns (the paper's 75 % overlap on a 1 mm brain is about 2,300).
LARGE_GRID_PATCHES = 20_000
#: More patches than this are refused: days of work for no measurable gain over a lower overlap.
MAX_PATCHES = 2_000_000


@dataclass(frozen=True, eq=False)
class PatchGrid:
    """Origins of overlapping patches over a ``(Z, Y, X)`` volume, in C order over the three axes.

    Attributes:
        shape: the volume shape.
        patch_size: the patch shape.
        axis_origins: sorted patch origins along each axis; the grid is their Cartesian product.
        border: ``"flush"`` or ``"pad"`` (see the module docstring).
        overlap: the requested overlap fraction.
    """

    shape: tuple[int, int, int]
    patch_size: tuple[int, int, int]
    axis_origins: tuple[np.ndarray, np.ndarray, np.ndarray]
    border: str
    overlap: float

    def __len__(self) -> int:
        return int(np.prod(self.counts))

    @property
    def counts(self) -> tuple[int, int, int]:
        """Number of patches along each axis."""
        return tuple(len(o) for o in self.axis_origins)  # type: ignore[return-value]

    @property
    def origins(self) -> np.ndarray:
        """``(N, 3)`` int64 patch origins in volume coordinates (may lie outside under padding)."""
        mesh = np.meshgrid(*self.axis_origins, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1).astype(np.int64)

    def boxes(self) -> np.ndarray:
        """``(N, 2, 3)`` ``[start, stop)`` corners of every patch, clipped to the volume (for the viewer)."""
        starts = self.origins
        stops = starts + np.asarray(self.patch_size)
        return np.stack([np.maximum(starts, 0), np.minimum(stops, self.shape)], axis=1)

    def tiling_boxes(self) -> np.ndarray:
        """``(N, 2, 3)`` Voronoi cell of every patch: the voxels nearer its centre than any other's.

        The cells partition the volume, so taking each voxel from its cell's patch is a tiling of
        the overlapping grid; with ``overlap=0`` and a volume that is a whole number of patches it
        is the plain tiling. The grid is a Cartesian product, so the nearest centre in 3D is the
        nearest centre along each axis; a voxel halfway between two centres goes to the first.
        """
        cells = [_axis_cells(o, p, s) for o, p, s in zip(self.axis_origins, self.patch_size, self.shape)]
        mesh = [np.meshgrid(*[c[:, k] for c in cells], indexing="ij") for k in (0, 1)]
        return np.stack([np.stack([m.ravel() for m in mesh[k]], axis=1) for k in (0, 1)], axis=1).astype(np.int64)

    def coverage(self) -> np.ndarray:
        """``(Z, Y, X)`` int32 count of the patches covering each voxel."""
        count = np.zeros(self.shape, dtype=np.int32)
        for (z0, y0, x0), (z1, y1, x1) in self.boxes():
            count[z0:z1, y0:y1, x0:x1] += 1
        return count

    def touching(self, mask: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: whether each patch's box holds at least one True voxel of the ``(Z, Y, X)`` `mask`."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape:
            raise InvalidInputError(f"a mask of shape {mask.shape} does not fit the patch grid's volume {self.shape}")
        # summed-area table with a zero border: any box's count in eight lookups, whatever the patch size
        dtype = np.int32 if mask.size < 2**31 else np.int64
        table = np.zeros(tuple(n + 1 for n in self.shape), dtype=dtype)
        table[1:, 1:, 1:] = mask.cumsum(0, dtype=dtype).cumsum(1).cumsum(2)
        (z0, y0, x0), (z1, y1, x1) = np.moveaxis(self.boxes(), 1, 0).transpose(0, 2, 1)
        count = (
            table[z1, y1, x1] - table[z0, y1, x1] - table[z1, y0, x1] - table[z1, y1, x0]
            + table[z0, y0, x1] + table[z0, y1, x0] + table[z1, y0, x0] - table[z0, y0, x0]
        )  # fmt: skip
        return count > 0

    def order(self, priority_slice: int | None = None, axis: int = 0) -> np.ndarray:
        """Patch indices in processing order: C order, or patches covering `priority_slice` first.

        With a priority slice the patches are sorted by the distance of their centre to that slice
        along `axis`, so the ones that cover it come first and the rest follow outwards.
        """
        if priority_slice is None:
            return np.arange(len(self))
        if not 0 <= priority_slice < self.shape[axis]:
            raise InvalidInputError(
                f"priority slice {priority_slice} is outside the volume: axis {axis} has {self.shape[axis]} slices"
            )
        starts = self.origins[:, axis]
        covers = (starts <= priority_slice) & (priority_slice < starts + self.patch_size[axis])
        distance = np.abs(starts + (self.patch_size[axis] - 1) / 2 - priority_slice)
        return np.lexsort((np.arange(len(self)), distance, ~covers))


def make_grid(
    shape: tuple[int, ...],
    patch_size: tuple[int, ...] | int,
    overlap: float = 0.5,
    border: Border = "flush",
) -> PatchGrid:
    """Lay out patches of `patch_size` over a volume of `shape` so that every voxel is covered.

    Args:
        shape: ``(Z, Y, X)`` volume shape, every side at least 1.
        patch_size: patch shape, or one int for a cube.
        overlap: fraction of a patch shared by neighbours, in ``[0, 1)``: 0 tiles, 0.5 is the
            paper's, 0.75 quadruples the patches per axis pair. The stride is
            ``max(1, int(patch * (1 - overlap)))``.
        border: ``"flush"`` (last patch flush with the border, no padding) or ``"pad"`` (the
            paper's grid: half a patch of zero padding on every side).

    Returns:
        The grid; its origins are in volume coordinates.
    """
    shape3 = _as_triple(shape, "volume shape")
    patch3 = _as_triple(patch_size, "patch size")
    overlap = check_overlap(overlap)
    if border not in BORDER_MODES:
        raise InvalidInputError(f"border must be one of {BORDER_MODES}, got {border!r}")
    axis_origins = tuple(_axis_origins(s, p, _stride(p, overlap), border) for s, p in zip(shape3, patch3))
    return PatchGrid(shape3, patch3, axis_origins, border, overlap)  # type: ignore[arg-type]


def check_workload(grid: PatchGrid, *, channels: int, batch_size: int, variants: int, modes: int = 1) -> None:
    """Refuse a run that cannot fit in memory or would take days; warn when it has very many patches.

    Args:
        grid: the run's patch grid.
        channels: input modalities.
        batch_size: patches per network call.
        variants: test-time augmentations per patch.
        modes: fusion modes accumulated.
    """
    patch_voxels = int(np.prod(grid.patch_size, dtype=np.int64))
    # the least a run holds: the batch with its augmentations (inputs, logits, probabilities), the
    # fusion kernels and the fused sums; the network's own activations come on top
    needed = 4 * (batch_size * variants * (channels + 2) * patch_voxels + modes * patch_voxels)
    needed += 4 * int(np.prod(grid.shape, dtype=np.int64)) * (2 * modes + 1)
    budget = memory_budget()
    size = "x".join(map(str, grid.patch_size))
    if needed > budget:
        fits = "x".join(str(min(p, s)) for p, s in zip(grid.patch_size, grid.shape))
        raise InvalidInputError(
            f"patch size {size} on a {'x'.join(map(str, grid.shape))} volume needs at least {format_bytes(needed)} "
            f"of memory ({batch_size} patch(es) x {variants} augmentation(s)), more than the {format_bytes(budget)} "
            f"available; use a smaller patch size (the volume is covered by {fits}), fewer patches per batch "
            "or no test-time augmentation"
        )
    count = len(grid)
    if count <= LARGE_GRID_PATCHES:
        return
    paper = len(make_grid(grid.shape, grid.patch_size, 0.5, grid.border))  # type: ignore[arg-type]
    what = (
        f"overlap {grid.overlap:g} with {size} patches gives {count:,} patches x {variants} augmentation(s) "
        f"({paper:,} at overlap 0.5)"
    )
    if count > MAX_PATCHES:
        raise InvalidInputError(f"{what}: more than {MAX_PATCHES:,}, which would take days; lower the overlap")
    warnings.warn(f"{what}: this run will take very long; lower the overlap to shorten it", LesionSegWarning, stacklevel=3)


def tta_variants(tta: str) -> tuple[str, ...]:
    """The augmentation names of a TTA set: ``"none"``, ``"paper"`` (four) or ``"mirror8"``."""
    if tta not in TTA_SETS:
        raise InvalidInputError(f"test-time augmentation must be one of {tuple(TTA_SETS)}, got {tta!r}")
    return TTA_SETS[tta]


def check_overlap(overlap: float) -> float:
    """`overlap` as a float after checking that it lies in ``[0, 1)``."""
    if not 0.0 <= float(overlap) < 1.0 or np.isnan(overlap):
        raise InvalidInputError(
            f"overlap must be a fraction in [0, 1) (0 = tiling, 0.5 = the paper's), got {overlap!r}"
        )
    return float(overlap)


def augment(batch: ArrayT, variant: str) -> ArrayT:
    """Apply augmentation `variant` to the last three (Z, Y, X) axes of an array or tensor."""
    if variant not in TTA_VARIANTS:
        raise InvalidInputError(f"unknown augmentation {variant!r}; expected one of {tuple(TTA_VARIANTS)}")
    axes = tuple(a - 3 for a in TTA_VARIANTS[variant])
    if not axes:
        return batch
    if isinstance(batch, torch.Tensor):
        return torch.flip(batch, axes)
    return np.flip(batch, axes)


def invert(prediction: ArrayT, variant: str) -> ArrayT:
    """Map a prediction made on an augmented patch back onto the original patch."""
    return augment(prediction, variant)  # flips are involutions


def _as_triple(value: tuple[int, ...] | int, name: str) -> tuple[int, int, int]:
    values = (value,) * 3 if np.ndim(value) == 0 else tuple(value)
    if len(values) != 3 or any(int(v) != v or v < 1 for v in values):
        raise InvalidInputError(f"{name} must be three positive integers (Z, Y, X), got {value!r}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def _stride(patch: int, overlap: float) -> int:
    return max(1, int(patch * (1.0 - overlap)))


def _axis_origins(size: int, patch: int, stride: int, border: str) -> np.ndarray:
    before = patch // 2 if border == "pad" else 0
    extent = max(size + (patch if border == "pad" else 0), patch)
    count = -(-(extent - patch) // stride) + 1
    starts = np.minimum(np.arange(count) * stride, extent - patch)
    return (starts - before).astype(np.int64)


def _axis_cells(origins: np.ndarray, patch: int, size: int) -> np.ndarray:
    """``(n, 2)`` start/stop of each patch's nearest-centre interval along one axis, clipped to the volume."""
    centres2 = 2 * origins + patch  # twice the patch centres, to stay in integers
    # voxel v (doubled centre 2v+1) stays in cell k while 2v+1 - c_k <= c_{k+1} - (2v+1)
    bounds = (centres2[:-1] + centres2[1:] - 2) // 4 + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [size]])
    return np.stack([np.clip(starts, 0, size), np.clip(stops, 0, size)], axis=1)

