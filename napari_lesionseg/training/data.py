"""Training subjects in memory: normalised multimodal stacks with their reference masks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_lesionseg.errors import InvalidInputError

__all__ = [
    "TrainingSubject",
    "channels_subject",
    "find_subject_dirs",
    "in_model_space",
    "load_training_subject",
    "load_training_subjects",
    "native_geometry",
    "pad_to_patch",
    "subject_from_arrays",
]

@dataclass(frozen=True)
class TrainingSubject:
    """A normalised image stack (C, Z, Y, X) float32, its bool mask (Z, Y, X) and voxel spacing (mm)."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]


def subject_from_arrays(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    name: str = "subject",
    *,
    normalize: bool = True,
) -> TrainingSubject:
    """Make a training subject from a raw stack (C, Z, Y, X) and a mask (Z, Y, X).

    Args:
        image: intensities in `constants.MODALITIES` order (or the checkpoint's order).
        mask: reference lesion mask, any dtype; nonzero is lesion.
        spacing: voxel size in mm along (Z, Y, X).
        name: shown in warnings and logs.
        normalize: apply `intensity.normalize_stack` (the normalisation inference uses).
    """
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask)
    if image.ndim != 4 or mask.shape != image.shape[1:]:
        raise InvalidInputError(
            f"subject {name!r}: expected an image (C, Z, Y, X) and a mask (Z, Y, X) of the same "
            f"grid, got image {image.shape} and mask {mask.shape}"
        )
    if normalize:
        from napari_lesionseg.data.intensity import normalize_stack

        image = np.asarray(normalize_stack(image), dtype=np.float32)
    return TrainingSubject(name, np.ascontiguousarray(image), mask != 0, tuple(float(s) for s in spacing))


def channels_subject(
    images: Mapping[str, np.ndarray],
    mask: np.ndarray,
    spacing: Sequence[float],
    name: str,
    *,
    modalities: Sequence[str],
    optional: Sequence[str] = (),
    model_spacing: Sequence[float] | None = None,
) -> TrainingSubject:
    """A training subject in the checkpoint's channel order, fed as inference feeds it.

    The images present are resampled to `model_spacing` (None: kept), then normalised together; an
    absent `optional` modality is a channel of 0, as `engine.predict` feeds it; an absent required one
    is an error naming the subject.
    """
    absent = [m for m in modalities if m not in images]
    required_absent = [m for m in absent if m not in set(optional)]
    if required_absent or len(absent) == len(modalities):
        raise InvalidInputError(
            f"subject {name!r} lacks {', '.join(required_absent or absent)}: found {', '.join(images) or 'nothing'}, "
            f"the network takes {', '.join(modalities)}" + (f" (optional: {', '.join(optional)})" if optional else "")
        )
    present = [m for m in modalities if m in images]
    stack = np.stack([np.asarray(images[m], dtype=np.float32) for m in present])
    subject = subject_from_arrays(*in_model_space(stack, np.asarray(mask), spacing, model_spacing), name)
    if not absent:
        return subject
    channels = iter(subject.image)
    zeros = np.zeros(subject.mask.shape, np.float32)
    return replace(subject, image=np.stack([next(channels) if m in images else zeros for m in modalities]))


def find_subject_dirs(path: str | os.PathLike[str]) -> list[Path]:
    """Subject folders under `path`: `path` itself if it holds NIfTI files, else its NIfTI sub-folders."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidInputError(f"training data folder {path} does not exist or is not a folder")
    if _has_nifti(path):
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and _has_nifti(p))
    if not found:
        raise InvalidInputError(
            f"no subject folders with NIfTI files (.nii/.nii.gz) found in {path}; expected one "
            "folder per subject, as written by `lesionseg sample`"
        )
    return found


def load_training_subjects(
    paths: Sequence[str | os.PathLike[str]],
    modalities: Sequence[str],
    optional: Sequence[str] = (),
    model_spacing: Sequence[float] | None = None,
) -> list[TrainingSubject]:
    """Load and normalise every subject under `paths` (see `find_subject_dirs`) at `model_spacing` mm (None: its
    own); each needs a mask.

    A subject without one of the `optional` modalities gets a channel of 0 there (`channels_subject`).
    """
    return [
        load_training_subject(folder, modalities, optional, model_spacing)
        for p in paths
        for folder in find_subject_dirs(p)
    ]


def load_training_subject(
    folder: str | os.PathLike[str],
    modalities: Sequence[str],
    optional: Sequence[str] = (),
    model_spacing: Sequence[float] | None = None,
) -> TrainingSubject:
    """One subject folder (with its reference mask) as a normalised training subject, at `model_spacing` mm
    (None: its own)."""
    from napari_lesionseg.data.subject import load_subject

    subject = load_subject(folder)
    if subject.mask is None:
        raise InvalidInputError(f"subject folder {folder} has no lesion mask; training needs one per subject")
    images = {m: volume.data for m, volume in subject.images.items() if m in modalities}
    return channels_subject(
        images, subject.mask.data, subject.mask.geometry.spacing, subject.name,
        modalities=modalities, optional=optional, model_spacing=model_spacing,
    )  # fmt: skip


def pad_to_patch(subject: TrainingSubject, patch_size: Sequence[int]) -> TrainingSubject:
    """Pad a subject smaller than the patch (at the far end) so that one patch fits.

    The image is padded with each channel's minimum (background after normalisation), the mask
    with no lesion.
    """
    pad = [max(0, int(p) - n) for p, n in zip(patch_size, subject.mask.shape)]
    if not any(pad):
        return subject
    widths = [(0, w) for w in pad]
    image = np.stack(
        [np.pad(c, widths, constant_values=float(c.min())) for c in subject.image]
    ).astype(np.float32)
    return replace(subject, image=image, mask=np.pad(subject.mask, widths))


def _has_nifti(folder: Path) -> bool:
    from napari_lesionseg.data.naming import is_nifti_path

    return any(is_nifti_path(p) for p in folder.iterdir() if p.is_file())


def in_model_space(
    stack: np.ndarray, mask: np.ndarray, spacing: Sequence[float], model_spacing: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray, Sequence[float]]:
    """A raw (C, Z, Y, X) stack (linear) and its mask (linear, then >= 0.5) on the model-space grid, with its spacing."""
    if model_spacing is None:
        return stack, mask, spacing
    from napari_lesionseg.engine.model_space import model_space, to_model

    native = native_geometry(mask.shape, spacing)
    space = model_space(native, model_spacing)
    if not space.resampled:
        return stack, mask, spacing
    stack = np.stack([to_model(channel, native, space) for channel in stack])
    return stack, to_model((mask != 0).astype(np.float32), native, space) >= 0.5, space.spacing


def native_geometry(shape: Sequence[int], spacing: Sequence[float]) -> Any:
    """A grid of `shape` voxels of `spacing` mm (where it sits does not matter to the model space)."""
    from napari_lesionseg.data.geometry import Geometry

    return Geometry.from_layer_scale(shape, spacing, (0.0, 0.0, 0.0))
