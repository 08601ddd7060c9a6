"""A clinician's corrected lesion mask: where it is autosaved, and how it is written and read back.

* The corrected mask of subject ``<sub>`` is saved beside the subject's files as
  ``<sub>_label-lesion_corrected.nii.gz``, on the subject's grid (`io.save_volume`, atomic). When the
  subject folder cannot be written, it goes to the per-user folder
  (``$LESIONSEG_HOME/corrections/<sub>-<folder hash>/``, beside the user checkpoints).
* The reference mask (``<sub>_label-lesion_mask``) is never written: `save_corrected_mask` refuses
  any target named like a reference mask, or listed as protected.
* Two generations at most: a write goes to a temporary file that is then renamed over the mask,
  so the last good state stays on disk at every instant. A session that starts afresh over an
  earlier autosave first keeps that one as ``<sub>_label-lesion_corrected_previous.nii.gz``
  (an atomic copy, made while the newest file still exists; an unreadable newest file is not kept
  over a good previous one).
* `find_corrected_mask` finds what to offer back on reopening: the newest readable corrected
  mask, else the previous generation; it first removes temporary files a killed write left.

Example:
    >>> path = save_corrected_mask(mask, geometry, corrected_mask_path(folder, "sub-01"))  # doctest: +SKIP
    >>> find_corrected_mask(folder, "sub-01") == path                                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_lesionseg._files import atomic_path, clean_stale_temps
from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.naming import CORRECTED_SUFFIX, nifti_stem
from napari_lesionseg.data.volumes import load_volume, volume_image
from napari_lesionseg.errors import InvalidInputError, LesionSegError

__all__ = [
    "corrected_mask_files",
    "corrected_mask_path",
    "find_corrected_mask",
    "keep_previous",
    "load_corrected_mask",
    "previous_path",
    "save_corrected_mask",
    "user_corrections_dir",
]

_EXTENSION = ".nii.gz"
_PREVIOUS = "_previous"

#: path -> ((mtime_ns, size), readable) of the files `find_corrected_mask` has checked.
_READABLE: dict[Path, tuple[tuple[int, int], bool]] = {}


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
    """What to offer back for subject `name`: its newest readable corrected mask, else the newest readable previous one.

    Temporary files left by a killed autosave of these files are removed first.
    """
    folder = Path(folder)
    newest = [folder / f"{name}_{CORRECTED_SUFFIX}{_EXTENSION}", _user_path(folder, name)]
    generations = (newest, [previous_path(p) for p in newest])
    for path in (*generations[0], *generations[1]):
        clean_stale_temps(path)
    for generation in generations:
        found = [p for p in generation if _readable(p)]
        if found:
            return max(found, key=lambda p: p.stat().st_mtime)
    return None


def corrected_mask_files(folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Every saved generation of subject `name`'s corrections, beside it and in the per-user folder."""
    folder = Path(folder)
    newest = [folder / f"{name}_{CORRECTED_SUFFIX}{_EXTENSION}", _user_path(folder, name)]
    return [p for p in (*newest, *(previous_path(p) for p in newest)) if p.is_file()]


def previous_path(path: str | os.PathLike[str]) -> Path:
    """The older generation kept beside a corrected mask: ``<stem>_previous.nii.gz``."""
    path = Path(path)
    stem = nifti_stem(path)
    return path.with_name(f"{stem}{_PREVIOUS}{path.name[len(stem):]}")


def save_corrected_mask(
    mask: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike[str],
    *,
    protected: Iterable[str | os.PathLike[str]] = (),
    fallback: tuple[str | os.PathLike[str], str] | None = None,
    keep_earlier: bool = False,
) -> Path:
    """Write a corrected mask (nonzero = lesion) as uint8 {0, 1} NIfTI on `geometry`'s grid, atomically.

    Args:
        mask: canonical (Z, Y, X) labels of shape ``geometry.shape``.
        geometry: the subject's grid (the source affine and header are written back).
        path: the target ``.nii.gz``/``.nii`` file.
        protected: files that must never be overwritten (the reference mask the review compares to).
        fallback: ``(subject folder, subject name)``: if writing `path` fails (read-only disk), write
            to the per-user folder instead.
        keep_earlier: keep the file being replaced as the previous generation (`keep_previous`),
            once the new one is written and before it replaces the old one.

    Returns:
        The path written.

    Raises:
        InvalidInputError: the target is a reference mask or protected, or the shapes differ.
    """
    path = Path(path)
    _refuse_reference_target(path, protected)
    image = volume_image((np.asarray(mask) != 0).astype(np.uint8), geometry, name=str(path))
    try:
        return _write_generation(image, path, keep_earlier)
    except OSError:
        if fallback is None:
            raise
        return _write_generation(image, _user_path(Path(fallback[0]), fallback[1]), keep_earlier)


def keep_previous(path: str | os.PathLike[str]) -> Path | None:
    """Keep a readable corrected mask as ``*_previous.nii.gz`` (one generation) without removing it.

    The copy is atomic (a temporary copy renamed into place), so at every instant both the mask and
    a complete previous generation exist. An unreadable mask is not kept:
    it would replace a good previous generation.
    """
    path = Path(path)
    if not _readable(path):
        return None
    previous = previous_path(path)
    with atomic_path(previous) as tmp:
        shutil.copyfile(path, tmp)  # a copy, not a hard link: a tool rewriting the mask in place must not change it
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


def _write_generation(image: nib.Nifti1Image, path: Path, keep_earlier: bool) -> Path:
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
        if keep_earlier:
            keep_previous(path)
    _READABLE.pop(path, None)
    return path


def _readable(path: Path) -> bool:
    """Whether `path` is a corrected mask that loads (cached per size and modification time)."""
    try:
        stat = path.stat()
    except OSError:
        return False
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _READABLE.get(path)
    if cached is None or cached[0] != stamp:
        try:
            with warnings.catch_warnings():  # geometry warnings come when the mask is restored
                warnings.simplefilter("ignore")
                load_volume(path, kind="mask")
            ok = True
        except LesionSegError:
            ok = False
        cached = (stamp, ok)
        _READABLE[path] = cached
    return cached[1]


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
