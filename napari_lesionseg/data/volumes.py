"""NIfTI files <-> canonical volumes: reading with every input check, and atomic writing onto the source grid.

Input policies (each violation raises `InvalidInputError` naming the file):

* 3-D volumes only: trailing singleton axes (``X×Y×Z×1``) are squeezed, a 2-D file is read as a
  one-slice volume, a real 4-D series is refused.
* Any integer or float voxel type is read as float32 (images); RGB and complex types are refused.
* NaN or infinite voxels are refused, with their count.
* The header must declare data that fits in the file and in memory, and a usable geometry
  (`data.headers`; doubtful geometry is a `GeometryWarning` naming the file).
* Masks (``kind="mask"``): nonzero = lesion (labels > 1 count as lesion), stored as uint8 {0, 1};
  fractional or negative values are refused. Labels (``kind="labels"``): non-negative integer values
  kept as they are (uint8/uint16/uint32).

Example:
    >>> flair = load_volume("sub-01/sub-01_FLAIR.nii.gz")             # doctest: +SKIP
    >>> save_volume(pred, flair.geometry, "sub-01_pred.nii.gz")       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from napari_lesionseg._files import atomic_path
from napari_lesionseg._memory import format_bytes
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.headers import check_header, read_bytes_needed
from napari_lesionseg.data.naming import is_nifti_path, modality_of, nifti_stem
from napari_lesionseg.errors import InvalidInputError

__all__ = ["OUTPUT_DESCRIP", "Volume", "VolumeKind", "load_volume", "save_volume", "volume_image"]

#: The header ``descrip`` of every NIfTI file this program writes: how it recognises its own outputs.
OUTPUT_DESCRIP = b"napari-lesionseg"


VolumeKind = Literal["image", "mask", "labels"]

_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error)


@dataclass(eq=False)
class Volume:
    """A canonical (Z, Y, X) = (S, P, L) array with the geometry of the file it came from."""

    data: np.ndarray
    geometry: Geometry
    name: str
    path: Path | None = None
    modality: str | None = None


# --- Reading ---------------------------------------------------------------------------------------


def load_volume(path: str | Path, *, kind: VolumeKind = "image") -> Volume:
    """Read one 3-D NIfTI file into a canonical `Volume`.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        kind: ``"image"`` (float32), ``"mask"`` (uint8 {0, 1}, nonzero = lesion) or ``"labels"``
            (non-negative integers kept as they are).

    Raises:
        InvalidInputError: the file is missing, unreadable, not 3-D, of an unsupported voxel type,
            has NaN/Inf voxels, or is not a valid mask/label image.
    """
    path = Path(path)
    with _nibabel_silenced():
        image = _read_nifti(path)
        try:
            return _volume_from_image(image, path, kind)
        except MemoryError:
            raise InvalidInputError(
                f"{path}: not enough memory to read its {'x'.join(map(str, image.shape))} voxels (about "
                f"{format_bytes(read_bytes_needed(image))}); free memory or crop the volume."
            ) from None


@contextlib.contextmanager
def _nibabel_silenced() -> Iterator[None]:
    """Keep nibabel from logging what it "fixes" in a header (a zero voxel size read as 1 mm) to stderr.

    `check_header` refuses or warns about such files in one line of its own. (nibabel's
    ``LoggingOutputSuppressor`` removes the logger's handlers, and Python's last-resort handler then
    prints the message anyway.)
    """
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _volume_from_image(image: nib.Nifti1Image, path: Path, kind: VolumeKind) -> Volume:
    source = _convert_voxels(_read_voxels(image, path), path, kind)
    geometry = Geometry.from_affine(image.affine, source.shape, image.header, source_name=str(path))
    return Volume(geometry.to_canonical(source), geometry, nifti_stem(path), path, modality_of(path))


# --- Writing ---------------------------------------------------------------------------------------


def save_volume(
    data: np.ndarray, geometry: Geometry, path: str | Path, *, dtype: np.dtype | type | str | None = None
) -> Path:
    """Write a canonical array onto its source grid (source affine and header) as NIfTI, atomically.

    Args:
        data: canonical (S, P, L) array of shape ``geometry.shape``.
        geometry: the geometry of the volume the array belongs to.
        path: target ``.nii`` or ``.nii.gz`` file (folders are created).
        dtype: voxel type on disk; by default uint8 for booleans and small non-negative integers,
            the smallest fitting integer type otherwise, float32 for floats (probabilities).

    Returns:
        The path written.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise InvalidInputError(f"{path}: cannot write NIfTI to this name; expected a name ending in .nii.gz or .nii.")
    image = volume_image(data, geometry, dtype=dtype, name=str(path))
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


def volume_image(
    data: np.ndarray, geometry: Geometry, *, dtype: np.dtype | type | str | None = None, name: str = "the volume"
) -> nib.Nifti1Image:
    """The NIfTI image `save_volume` writes: `data` on the source grid, with the source affine and header."""
    data = np.asarray(data)
    if tuple(data.shape) != geometry.shape:
        raise InvalidInputError(
            f"{name}: the array to write has shape {tuple(data.shape)} but its geometry expects {geometry.shape} "
            f"(canonical S, P, L; source {geometry.describe()})."
        )
    dtype = np.dtype(dtype) if dtype is not None else _storage_dtype(data)
    source = geometry.to_source(data.astype(dtype, copy=False))
    header = _output_header(geometry.header, dtype)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    return image_class(source, geometry.affine, header)


# --- Voxel reading and checks -------------------------------------------------------------------------


def _read_nifti(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found.")
    if not path.is_file():
        raise InvalidInputError(f"{path}: is a folder, not a NIfTI file.")
    if not is_nifti_path(path):
        raise InvalidInputError(f"{path}: not a NIfTI file name; expected a name ending in .nii.gz or .nii.")
    if not os.access(path, os.R_OK):
        raise InvalidInputError(f"{path}: permission denied: this user cannot read the file.")
    try:
        image = nib.load(str(path), mmap=False)
    except PermissionError as err:
        raise InvalidInputError(f"{path}: permission denied: this user cannot read the file ({err}).") from err
    except _READ_ERRORS as err:
        raise InvalidInputError(
            f"{path}: cannot be read as NIfTI ({err}). Is the file empty, truncated or of another format?"
        ) from err
    if not isinstance(image, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise InvalidInputError(f"{path}: is a {type(image).__name__}, not a NIfTI-1/2 image.")
    check_header(image, path)
    return image


def _read_voxels(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    dtype = image.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise InvalidInputError(
            f"{path}: voxel type {dtype} is not supported (RGB or complex?); expected one scalar intensity per voxel."
        )
    shape = _three_d_shape(image.shape, path)
    try:
        voxels = np.asanyarray(image.dataobj)
    except _READ_ERRORS as err:
        raise InvalidInputError(
            f"{path}: the voxel data cannot be read ({err}); the file may be truncated or corrupt."
        ) from err
    return voxels.reshape(shape)


def _three_d_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    if any(n == 0 for n in shape):
        raise InvalidInputError(f"{path}: the volume is empty (shape {shape}).")
    if len(shape) < 3:  # one slice: it has no slice thickness, so no lesion volume or 3-D patch to compute
        raise InvalidInputError(
            f"{path}: is a 2-D image of shape {shape}; expected a 3-D volume (the whole series of slices)."
        )
    if any(n != 1 for n in shape[3:]):
        raise InvalidInputError(
            f"{path}: is a {len(shape)}-D series of shape {shape}; expected one 3-D volume. "
            "Split the series (e.g. fslsplit) and pass one volume."
        )
    return shape[:3]  # type: ignore[return-value]


def _convert_voxels(voxels: np.ndarray, path: Path, kind: VolumeKind) -> np.ndarray:
    if kind not in ("image", "mask", "labels"):
        raise ValueError(f"kind must be 'image', 'mask' or 'labels', not {kind!r}")
    if kind == "image":
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused just below
            voxels = voxels.astype(np.float32, copy=False)
    _check_finite(voxels, path)
    if kind == "image":
        return voxels
    _check_integral(voxels, path, kind)
    if kind == "mask":
        return (voxels != 0).astype(np.uint8)
    return voxels.astype(_smallest_unsigned(int(voxels.max())), copy=False)


def _check_finite(voxels: np.ndarray, path: Path) -> None:
    if voxels.dtype.kind != "f":
        return
    bad = voxels.size - int(np.count_nonzero(np.isfinite(voxels)))
    if bad:
        raise InvalidInputError(
            f"{path}: {bad} of {voxels.size} voxels are NaN or infinite (after conversion to float32). "
            "Replace them (e.g. with 0) before loading."
        )


def _check_integral(voxels: np.ndarray, path: Path, kind: str) -> None:
    kind = "label image" if kind == "labels" else kind
    if voxels.dtype.kind == "f" and not np.array_equal(voxels, np.round(voxels)):
        raise InvalidInputError(
            f"{path}: a {kind} must hold whole numbers (0 = background, nonzero = lesion) but has fractional values "
            f"(range {float(voxels.min()):g}..{float(voxels.max()):g}). Threshold it first (e.g. at 0.5)."
        )
    if voxels.min() < 0:
        raise InvalidInputError(f"{path}: a {kind} must not hold negative values (minimum {voxels.min()}).")


def _smallest_unsigned(maximum: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if maximum <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _storage_dtype(data: np.ndarray) -> np.dtype:
    if data.dtype == bool:
        return np.dtype(np.uint8)
    if data.dtype.kind in "iu":
        lowest, highest = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for dtype in (np.uint8, np.int16, np.uint16, np.int32):
            if np.iinfo(dtype).min <= lowest and highest <= np.iinfo(dtype).max:
                return np.dtype(dtype)
        return np.dtype(np.int64)
    return np.dtype(np.float32)


# --- Headers and messages ----------------------------------------------------------------------------


def _output_header(source: nib.Nifti1Header, dtype: np.dtype) -> nib.Nifti1Header:
    """The source header with this array's voxel type and no stale scaling or display range."""
    header = source.copy()
    header.set_data_dtype(dtype)
    header.set_slope_inter(None, None)
    header["cal_min"] = 0.0
    header["cal_max"] = 0.0
    header.set_intent("none")
    header["descrip"] = OUTPUT_DESCRIP
    return header


