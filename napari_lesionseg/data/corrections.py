"""A clinician's corrected lesion mask: where it is autosaved, and how it is written and read back.

* The corrected mask of subject ``<sub>`` is saved beside the subject's files as
  ``<sub>_label-lesion_corrected.nii.gz``, on the subject's grid (`io.save_volume`, atomic). When the
  subject folder cannot be written, it goes to the per-user folder
  (``$LESIONSEG_HOME/corrections/<sub>-<folder hash>/``, beside the user checkpoints).
* The reference mask (``<sub>_label-lesion_mask``) is never written: `save_corrected_mask` refuses
  any target named like a reference mask, or listed as protected.
* `find_corrected_mask` finds an earlier autosave of a subject, so reopening it can restore the work.

Example:
    >>> path = save_corrected_mask(mask, geometry, corrected_mask_path(folder, "sub-01"))  # doctest: +SKIP
    >>> find_corrected_mask(folder, "sub-01") == path                                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.naming import CORRECTED_SUFFIX, nifti_stem
from napari_lesionseg.data.volumes import load_volume, save_volume
from napari_lesionseg.errors import InvalidInputError

__all__ = [
    "corrected_mask_path",
    "find_corrected_mask",
    "keep_previous",
    "load_corrected_mask",
    "save_corrected_mask",
    "user_corrections_dir",
]

_EXTENSION = ".nii.gz"


def user_corrections_dir() -> Path:
    """Per-user folder for corrected masks whose subject folder is read-only (beside the checkpoints)."""
    from napari_lesionseg.engine.checkpoints import user_checkpoint_dir

    return user_checkpoint_dir().parent / "corrections"


def corrected_mask_path(folder: str | os.PathLike[str], name: str) -> Path:
    """Where subject `name`'s corrected mask is saved: in its folder if writable, else the user folder."""
    folder = Path(folder)
    beside = folder / f"{name}_{CORRECTED_SUFFIX}{_EXTENSION}"
    if folder.is_dir() and os.access(folder, os.W_OK) and (not beside.exists() or os.access(beside, os.W_OK)):
        return beside
    return _user_path(folder, name)


def find_corrected_mask(folder: str | os.PathLike[str], name: str) -> Path | None:
    """The most recent saved corrected mask of subject `name` (beside it or in the user folder), if any."""
    folder = Path(folder)
    found = [p for p in (folder / f"{name}_{CORRECTED_SUFFIX}{_EXTENSION}", _user_path(folder, name)) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def save_corrected_mask(
    mask: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike[str],
    *,
    protected: Iterable[str | os.PathLike[str]] = (),
    fallback: tuple[str | os.PathLike[str], str] | None = None,
) -> Path:
    """Write a corrected mask (nonzero = lesion) as uint8 {0, 1} NIfTI on `geometry`'s grid, atomically.

    Args:
        mask: canonical (Z, Y, X) labels of shape ``geometry.shape``.
        geometry: the subject's grid (the source affine and header are written back).
        path: the target ``.nii.gz``/``.nii`` file.
        protected: files that must never be overwritten (the reference mask the review compares to).
        fallback: ``(subject folder, subject name)``: if writing `path` fails (read-only disk), write
            to the per-user folder instead.

    Returns:
        The path written.

    Raises:
        InvalidInputError: the target is a reference mask or protected, or the shapes differ.
    """
    path = Path(path)
    _refuse_reference_target(path, protected)
    data = (np.asarray(mask) != 0).astype(np.uint8)
    try:
        return save_volume(data, geometry, path)
    except OSError:
        if fallback is None:
            raise
        return save_volume(data, geometry, _user_path(Path(fallback[0]), fallback[1]))


def keep_previous(path: str | os.PathLike[str]) -> Path | None:
    """Move an existing corrected mask aside to ``*_previous.nii.gz`` (one level) before a new one replaces it.

    A fresh correction session that did not start from the saved file calls this before its first
    write, so corrections the user did not restore are kept, not silently overwritten.
    """
    path = Path(path)
    if not path.is_file():
        return None
    stem = nifti_stem(path)
    previous = path.with_name(f"{stem}_previous{path.name[len(stem):]}")
    os.replace(path, previous)
    return previous


def load_corrected_mask(path: str | os.PathLike[str], shape: Sequence[int] | None = None) -> np.ndarray:
    """Read a saved corrected mask as a canonical uint8 (Z, Y, X) array; check its shape if given."""
    volume = load_volume(path, kind="mask")
    if shape is not None and tuple(volume.data.shape) != tuple(shape):
        raise InvalidInputError(
            f"{path}: the corrected mask has shape {tuple(volume.data.shape)} but the subject's images have "
            f"{tuple(shape)}; it belongs to another grid (delete or move it to start afresh)"
        )
    return volume.data


def _user_path(folder: Path, name: str) -> Path:
    digest = hashlib.sha1(str(folder.resolve()).encode("utf-8")).hexdigest()[:8]
    return user_corrections_dir() / f"{name}-{digest}" / f"{name}_{CORRECTED_SUFFIX}{_EXTENSION}"


def _refuse_reference_target(path: Path, protected: Iterable[str | os.PathLike[str]]) -> None:
    if nifti_stem(path).lower().endswith(MASK_SUFFIX.lower()):
        raise InvalidInputError(
            f"{path} is named like a reference mask (*_{MASK_SUFFIX}); corrections are never written over "
            f"a reference: save them as *_{CORRECTED_SUFFIX}{_EXTENSION}"
        )
    target = path.resolve()
    if any(Path(p).resolve() == target for p in protected):
        raise InvalidInputError(
            f"{path} is the reference mask under review; corrections are never written over it: choose "
            "another file name"
        )
