"""How a phantom is acquired: skull-stripped, and 2-D sequences with thick slices.

Clinical MS protocols often acquire FLAIR, T2w and PDw as 2-D stacks of 3-5 mm slices beside a
3-D 1 mm T1w, and many pipelines hand over skull-stripped images. A thick slice is the mean of the
fine slices it spans (block averaging along one axis), so partial volume and noise behave as in a
real thick-slice acquisition; the reference mask follows the FLAIR's grid.

Example:
    >>> phantom = acquire(make_phantom(1, spacing=1.0), slice_thickness=3.0, thick=("FLAIR", "T2w", "PDw"))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.data.phantom.subject import LesionLoad, Phantom
from napari_lesionseg.errors import InvalidInputError

__all__ = ["SLICE_AXES", "acquire", "brain_mask", "pial_mask", "skull_strip", "thick_slices"]

#: Sulci narrower than this (mm) are closed over by a tight (pial) skull stripper's mask.
PIAL_CLOSING_MM = 3.0
#: Slice orientations and the canonical (S, P, L) axis each one cuts across.
SLICE_AXES: dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}


def acquire(
    phantom: Phantom,
    *,
    skull_strip_images: bool = False,
    slice_thickness: float | None = None,
    slice_axis: str = "axial",
    thick: Sequence[str] | None = None,
) -> Phantom:
    """`phantom` skull-stripped (if asked) and then with thick slices for the `thick` modalities (None: all)."""
    if skull_strip_images:
        phantom = skull_strip(phantom)
    if slice_thickness is not None:
        phantom = thick_slices(phantom, slice_thickness, slice_axis, thick)
    return phantom


def skull_strip(phantom: Phantom) -> Phantom:
    """Every image set to 0 outside the brain (grey and white matter and the CSF inside the brain hull)."""
    brain = brain_mask(phantom)
    images = {m: np.where(brain, image, 0.0).astype(np.float32) for m, image in phantom.images.items()}
    return dataclasses.replace(phantom, images=images)


def brain_mask(phantom: Phantom) -> np.ndarray:
    """The brain as a skull stripper would keep it: grey and white matter and CSF inside the hull, holes filled."""
    brain = phantom.tissues["gm"] + phantom.tissues["wm"] + phantom.tissues["csf"] >= 0.5
    return ndi.binary_fill_holes(brain)


def pial_mask(phantom: Phantom) -> np.ndarray:
    """The brain as a tight stripper keeps it: grey and white matter, narrow sulci and the ventricles, no outer CSF.

    Many pipelines (e.g. those that register to MNI and strip with a template) cut at the cortex, so
    the bright grey-matter ribbon touches the zero background; `brain_mask` keeps the CSF around it.
    """
    tissue = phantom.tissues["gm"] + phantom.tissues["wm"] >= 0.5
    radius = max(1, round(PIAL_CLOSING_MM / phantom.spacing))
    ball = np.linalg.norm(np.indices((2 * radius + 1,) * 3) - radius, axis=0) <= radius
    inner = (slice(radius, -radius),) * 3
    closed = ndi.binary_closing(np.pad(tissue, radius), structure=ball)[inner]
    return ndi.binary_fill_holes(closed)


def thick_slices(
    phantom: Phantom, thickness: float, axis: str = "axial", modalities: Sequence[str] | None = None
) -> Phantom:
    """The `modalities` (None: all) as slices `thickness` mm thick across `axis`, block-averaged.

    The thickness must be a whole multiple of the phantom's spacing. The mask, the tissue maps and
    the phantom's affine follow the FLAIR: thick when the FLAIR is, else unchanged.
    """
    if axis not in SLICE_AXES:
        raise InvalidInputError(f"slice axis {axis!r} is unknown: expected one of {', '.join(SLICE_AXES)}")
    factor = _factor(thickness, phantom.spacing)
    chosen = list(phantom.images) if modalities is None else list(modalities)
    unknown = sorted(set(chosen) - set(phantom.images))
    if unknown:
        raise InvalidInputError(f"cannot thicken {', '.join(unknown)}: the phantom has {', '.join(phantom.images)}")
    index = SLICE_AXES[axis]
    if phantom.mask.shape[index] < factor:
        raise InvalidInputError(f"{thickness:g} mm slices are thicker than the phantom's field of view")
    affine = _thick_affine(phantom.image_affines.get(chosen[0], phantom.affine), index, factor)
    images = {m: _block_mean(image, index, factor) if m in chosen else image for m, image in phantom.images.items()}
    image_affines = {**phantom.image_affines, **{m: affine for m in chosen}}
    if "FLAIR" not in chosen:
        return dataclasses.replace(phantom, images=images, image_affines=image_affines)
    tissues = {name: _block_mean(fraction, index, factor) for name, fraction in phantom.tissues.items()}
    mask = (tissues["lesion"] >= 0.5).astype(np.uint8)
    load = _lesion_load(phantom, mask, np.prod(_voxel(phantom.spacing, index, factor)))
    # The thick ones now share the phantom's affine; the others keep the fine grid they were on.
    image_affines = {m: phantom.image_affines.get(m, phantom.affine) for m in phantom.images if m not in chosen}
    return dataclasses.replace(
        phantom, images=images, mask=mask, affine=affine, tissues=tissues, lesion_load=load, image_affines=image_affines
    )


def _factor(thickness: float, spacing: float) -> int:
    factor = float(thickness) / float(spacing)
    if not np.isfinite(factor) or factor < 1 or abs(factor - round(factor)) > 1e-6:
        raise InvalidInputError(
            f"slice thickness {thickness:g} mm must be a whole multiple (at least 1) of the spacing {spacing:g} mm"
        )
    return round(factor)


def _block_mean(volume: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Mean of each run of `factor` slices along `axis` (a remainder at the far end is dropped)."""
    count = volume.shape[axis] // factor
    cropped = np.take(volume, np.arange(count * factor), axis=axis)
    shape = (*volume.shape[:axis], count, factor, *volume.shape[axis + 1 :])
    return cropped.reshape(shape).mean(axis=axis + 1, dtype=np.float64).astype(np.float32)


def _thick_affine(affine: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """The affine of the block-averaged grid: voxel `factor` times longer, centred on its fine slices."""
    change = np.eye(4)
    change[axis, axis] = factor
    change[axis, 3] = (factor - 1) / 2.0
    return np.asarray(affine, dtype=np.float64) @ change


def _voxel(spacing: float, axis: int, factor: int) -> tuple[float, float, float]:
    return tuple(spacing * (factor if a == axis else 1) for a in range(3))  # type: ignore[return-value]


def _lesion_load(phantom: Phantom, mask: np.ndarray, voxel_mm3: float) -> LesionLoad:
    _, count = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    voxels = int(np.count_nonzero(mask))
    return dataclasses.replace(
        phantom.lesion_load, volume_ml=voxels * float(voxel_mm3) / 1000.0, n_lesions=int(count), n_voxels=voxels
    )
