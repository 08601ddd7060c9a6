"""Phantom subjects on disk: one folder per subject, NIfTI files named as the project reads them."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_lesionseg._files import write_bytes_atomic
from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.phantom.acquisition import acquire
from napari_lesionseg.data.phantom.subject import Phantom, make_phantom
from napari_lesionseg.errors import InvalidInputError

__all__ = ["FILE_DTYPES", "subject_name", "write_phantom", "write_phantoms", "written_phantom"]

#: How every phantom file's header description starts (then its seed, spacing and scanner).
_DESCRIPTION_PREFIX = "napari-lesionseg phantom"

#: Image dtypes the writer can store, as scanners and pipelines do.
FILE_DTYPES = ("int16", "float32")


def subject_name(index: int) -> str:
    """Folder name of the `index`-th (1-based) subject written by write_phantoms."""
    return f"sub-phantom{index:03d}"


def write_phantom(
    phantom: Phantom, out_dir: str | os.PathLike[str], subject: str, dtype: str | None = None
) -> Path:
    """Write `<out_dir>/<subject>/<subject>_<modality>.nii.gz` and `<subject>_label-lesion_mask.nii.gz`.

    Files are stored in RAS+ voxel order with a scanner (sform/qform code 1) affine in mm, the mask
    as uint8. Each file is written atomically and gzipped without a time stamp, so the same phantom
    gives byte-identical files.

    Args:
        phantom: the subject to write.
        out_dir: folder that receives the subject folder.
        subject: name of the subject folder and prefix of its files.
        dtype: "int16" (images rounded) or "float32"; None keeps the phantom's `file_dtype`.

    Returns:
        The subject folder.
    """
    dtype = phantom.file_dtype if dtype is None else dtype
    if dtype not in FILE_DTYPES:
        raise InvalidInputError(f"image dtype {dtype!r} is not supported: expected one of {', '.join(FILE_DTYPES)}")
    folder = Path(out_dir) / subject
    description = f"{_DESCRIPTION_PREFIX} seed={phantom.seed} spacing={phantom.spacing:g}mm"
    if phantom.contrast != "default":
        description += f" contrast={phantom.contrast}"
    for modality, image in phantom.images.items():
        data = _as_dtype(image, dtype)
        affine = phantom.image_affines.get(modality, phantom.affine)
        _write_nifti(data, affine, folder / f"{subject}_{modality}.nii.gz", description)
    _write_nifti(phantom.mask.astype(np.uint8), phantom.affine, folder / f"{subject}_{MASK_SUFFIX}.nii.gz", description)
    return folder


def written_phantom(path: str | os.PathLike[str]) -> tuple[int, float] | None:
    """The (seed, spacing in mm) of the phantom `write_phantom` wrote to `path`, or None for any other file."""
    from napari_lesionseg.data.outputs import nifti_description

    description = nifti_description(Path(path)).decode("ascii", "replace")
    found = re.match(rf"{_DESCRIPTION_PREFIX} seed=(\d+) spacing=([0-9.]+)mm", description)
    return (int(found[1]), float(found[2])) if found else None


def write_phantoms(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    spacing: float = 2.0,
    *,
    lesion_load: str | float | None = None,
    t1c: bool = False,
    dtype: str | None = None,
    contrast: str = "default",
    on_subject: Callable[[Path, Phantom], None] | None = None,
    acquisition: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Make and write `n` subjects named sub-phantom001, sub-phantom002...; subject i uses seed `seed + i - 1`.

    Args:
        out_dir: folder that receives one sub-folder per subject.
        n: number of subjects, at least 1.
        seed: seed of the first subject. With `lesion_load=None` consecutive seeds cycle through the
            load categories, so any four subjects span very low to high loads.
        spacing: isotropic voxel size (mm).
        lesion_load: passed to make_phantom for every subject.
        t1c: also write a gadolinium-enhanced T1.
        dtype: image dtype of every subject; None lets each subject's scanner choose.
        contrast: the scanner's contrast profile (`contrast.CONTRAST_PROFILES`), for every subject.
        on_subject: called with (folder, phantom) after each subject is written.
        acquisition: keyword arguments of `acquisition.acquire` (skull stripping, thick slices).

    Returns:
        The subject folders, in order.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"number of phantom subjects {n!r} is not usable: expected an integer >= 1")
    folders = []
    for index in range(1, n + 1):
        phantom = make_phantom(seed + index - 1, spacing, lesion_load, t1c=t1c, contrast=contrast)
        if acquisition:
            phantom = acquire(phantom, **acquisition)
        folder = write_phantom(phantom, out_dir, subject_name(index), dtype)
        if on_subject is not None:
            on_subject(folder, phantom)
        folders.append(folder)
    return folders


def _as_dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "int16":
        info = np.iinfo(np.int16)
        return np.clip(np.round(image), info.min, info.max).astype(np.int16)
    return image.astype(np.float32)


def _write_nifti(data: np.ndarray, affine: np.ndarray, path: Path, description: str) -> None:
    """Reorder `data` from its affine's axes to RAS+ and write it as a deterministic .nii.gz."""
    orientation = nib.orientations.io_orientation(affine)
    ras_data = nib.orientations.apply_orientation(data, orientation)
    ras_affine = affine @ nib.orientations.inv_ornt_aff(orientation, data.shape)
    image = nib.Nifti1Image(np.ascontiguousarray(ras_data), ras_affine)
    image.header.set_data_dtype(data.dtype)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = description.encode("ascii")[:79]
    image.set_qform(ras_affine, code=1)
    image.set_sform(ras_affine, code=1)
    write_bytes_atomic(path, gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))
