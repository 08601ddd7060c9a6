"""NIfTI files <-> canonical volumes and subjects, with the geometry needed to write results back.

Every volume is brought to one canonical orientation, array axes (S, P, L): axis 0 inferior ->
superior, axis 1 anterior -> posterior, axis 2 right -> left (see docs/ARCHITECTURE.md). The
reorientation is a pure axis permutation/flip (nibabel orientation tools), never an interpolation,
and `Geometry` keeps the source affine (bit for bit), header and shape so that `save_volume` writes
a canonical array back onto the source grid.

Input policies (each violation raises `InvalidInputError` naming the file):

* 3-D volumes only: trailing singleton axes (``X×Y×Z×1``) are squeezed, a 2-D file is read as a
  one-slice volume, a real 4-D series is refused.
* Any integer or float voxel type is read as float32 (images); RGB and complex types are refused.
* NaN or infinite voxels are refused, with their count.
* Masks (``kind="mask"``): nonzero = lesion (labels > 1 count as lesion), stored as uint8 {0, 1};
  fractional or negative values are refused. Labels (``kind="labels"``): non-negative integer values
  kept as they are (uint8/uint16/uint32).

Example:
    >>> subject = load_subject("data/sub-01")                  # doctest: +SKIP
    >>> x = subject.stack(("FLAIR", "T1w", "T2w", "PDw"))      # (4, Z, Y, X) float32  # doctest: +SKIP
    >>> save_volume(pred, subject.geometry, "sub-01_pred.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from nibabel.spatialimages import HeaderDataError

from napari_lesionseg._files import atomic_path
from napari_lesionseg.constants import MASK_SUFFIX, MODALITIES
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.data.resample import resample_volume

__all__ = [
    "CANONICAL_AXCODES",
    "NIFTI_SUFFIXES",
    "Geometry",
    "Subject",
    "Volume",
    "find_subject_files",
    "geometry_from_layer_metadata",
    "is_nifti_path",
    "layer_metadata",
    "load_subject",
    "load_volume",
    "modality_of",
    "nifti_stem",
    "save_volume",
]

#: Anatomical direction each canonical array axis points to (nibabel axis codes).
CANONICAL_AXCODES: tuple[str, str, str] = ("S", "P", "L")
#: File name endings read and written as NIfTI (compared case-insensitively).
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
#: Key of this package's entry in a napari layer's ``metadata``.
METADATA_KEY = "lesionseg"

VolumeKind = Literal["image", "mask", "labels"]

_CANONICAL_ORNT = axcodes2ornt(CANONICAL_AXCODES)
#: Relative tolerance (of the voxel size) under which two grids count as the same.
_GRID_TOLERANCE = 1e-3
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error)
_ROLE_PATTERN = re.compile(
    r"^(?:(?P<prefix>.+)_)?(?P<role>" + "|".join(re.escape(m) for m in (*MODALITIES, MASK_SUFFIX)) + r")$",
    re.IGNORECASE,
)
_ROLE_SPELLING = {role.lower(): role for role in (*MODALITIES, MASK_SUFFIX)}


@dataclass(frozen=True, eq=False)
class Geometry:
    """Where a canonical (S, P, L) array sits in the scanner, and how to put it back in its file.

    Attributes:
        affine: the source file's voxel -> scanner-mm (RAS+) affine, exactly as nibabel read it.
        header: a copy of the source NIfTI header (written back, with dtype and scaling updated).
        source_shape: the 3-D shape of the array as stored in the file.
        orientation: nibabel orientation transform from the source axes to canonical (S, P, L).
        canonical_affine: voxel -> scanner-mm affine of the canonical array.
    """

    affine: np.ndarray
    header: nib.Nifti1Header
    source_shape: tuple[int, int, int]
    orientation: np.ndarray
    canonical_affine: np.ndarray

    @classmethod
    def from_affine(
        cls,
        affine: np.ndarray,
        source_shape: Sequence[int],
        header: nib.Nifti1Header | None = None,
        *,
        source_name: str = "affine",
    ) -> Geometry:
        """Geometry of a source grid with `affine` and 3-D `source_shape` (a fresh header if None).

        Args:
            affine: 4x4 voxel -> scanner-mm (RAS+) affine of the source array.
            source_shape: shape of the source array (3 axes).
            header: the source NIfTI header; a new NIfTI-1 header carrying `affine` when None.
            source_name: names where the affine comes from (a file path) in error messages.
        """
        affine = np.array(affine, dtype=np.float64)
        source_shape = tuple(int(n) for n in source_shape)
        if affine.shape != (4, 4) or not np.isfinite(affine).all():
            raise InvalidInputError(f"{source_name}: the affine must be a finite 4x4 matrix; found {affine.tolist()}.")
        if len(source_shape) != 3:
            raise InvalidInputError(f"{source_name}: expected a 3-D grid, found shape {source_shape}.")
        source_ornt = io_orientation(affine)
        if np.isnan(source_ornt).any():
            raise InvalidInputError(
                f"{source_name}: the affine is singular (a voxel axis has no direction in space): "
                f"{_format_affine(affine)}. Fix the file's sform/qform."
            )
        orientation = ornt_transform(source_ornt, _CANONICAL_ORNT)
        canonical_affine = affine @ inv_ornt_aff(orientation, source_shape)
        header = _new_header(affine, source_shape) if header is None else header.copy()
        for array in (affine, orientation, canonical_affine):
            array.setflags(write=False)
        return cls(affine, header, source_shape, orientation, canonical_affine)

    @classmethod
    def from_layer_scale(cls, shape: Sequence[int], scale: Sequence[float], translate: Sequence[float]) -> Geometry:
        """Geometry of a canonical array placed by napari `scale`/`translate`, stored as RAS on disk."""
        shape = tuple(int(n) for n in shape)
        scale = np.asarray(scale, dtype=np.float64)
        translate = np.asarray(translate, dtype=np.float64)
        if len(shape) != 3 or scale.shape != (3,) or translate.shape != (3,) or not (scale > 0).all():
            raise InvalidInputError(
                f"Cannot place a layer of shape {shape} with scale {scale.tolist()} "
                f"and translate {translate.tolist()}: "
                "expected a 3-D layer with three positive scale values."
            )
        canonical_affine = np.eye(4)
        # Canonical axes point to +S, -A (posterior), -R (left) in RAS+ scanner space.
        canonical_affine[:3, :3] = np.array([[0, 0, -1], [0, -1, 0], [1, 0, 0]], dtype=np.float64) * scale
        canonical_affine[:3, 3] = (-translate[2], -translate[1], translate[0])
        to_ras = ornt_transform(_CANONICAL_ORNT, axcodes2ornt(("R", "A", "S")))
        ras_affine = canonical_affine @ inv_ornt_aff(to_ras, shape)
        ras_shape = tuple(shape[int(axis)] for axis in np.argsort(to_ras[:, 0]))
        return cls.from_affine(ras_affine, ras_shape)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the canonical (S, P, L) array."""
        order = np.argsort(self.orientation[:, 0])
        return tuple(self.source_shape[int(axis)] for axis in order)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical axes (napari layer ``scale``)."""
        columns = self.canonical_affine[:3, :3]
        return tuple(float(s) for s in np.sqrt((columns**2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def napari_translate(self) -> tuple[float, float, float]:
        """World position (mm along S, P, L) of canonical voxel 0 (napari layer ``translate``)."""
        x, y, z = self.canonical_affine[:3, 3]
        return (float(z), float(-y), float(-x))

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """Reorient a source-grid array to canonical (S, P, L), as a C-contiguous array."""
        self._check_shape(array, self.source_shape, "source")
        return np.ascontiguousarray(apply_orientation(array, self.orientation))

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """Reorient a canonical array back to the source file's axes, as a C-contiguous array."""
        self._check_shape(array, self.shape, "canonical")
        back = ornt_transform(_CANONICAL_ORNT, io_orientation(self.affine))
        return np.ascontiguousarray(apply_orientation(array, back))

    def same_grid(self, other: Geometry) -> bool:
        """Whether `other` describes the same voxel grid in space (up to a storage reorientation)."""
        if self.shape != other.shape:
            return False
        tolerance = _GRID_TOLERANCE * min(min(self.spacing), min(other.spacing))
        return bool(np.allclose(self.canonical_affine, other.canonical_affine, rtol=0.0, atol=tolerance))

    def describe(self) -> str:
        """One line with the source shape and affine, for error messages."""
        return f"shape {self.source_shape}, affine {_format_affine(self.affine)}"

    def _check_shape(self, array: np.ndarray, expected: tuple[int, ...], which: str) -> None:
        if tuple(array.shape) != tuple(expected):
            raise InvalidInputError(
                f"Array of shape {tuple(array.shape)} does not fit the {which} grid {tuple(expected)}."
            )


@dataclass(eq=False)
class Volume:
    """A canonical (Z, Y, X) = (S, P, L) array with the geometry of the file it came from."""

    data: np.ndarray
    geometry: Geometry
    name: str
    path: Path | None = None
    modality: str | None = None


@dataclass(eq=False)
class Subject:
    """One subject's co-registered modalities (in `constants.MODALITIES` order) and reference mask."""

    name: str
    folder: Path
    images: dict[str, Volume]
    mask: Volume | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        if not self.images:
            raise InvalidInputError(f"Subject {self.name!r} ({self.folder}) has no images.")
        if not self.reference:
            self.reference = "FLAIR" if "FLAIR" in self.images else next(iter(self.images))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities present, in `constants.MODALITIES` order."""
        return tuple(self.images)

    @property
    def geometry(self) -> Geometry:
        """The subject's grid: the FLAIR's (or the first modality's when there is no FLAIR)."""
        return self.images[self.reference].geometry

    def stack(self, modalities: Sequence[str] | None = None) -> np.ndarray:
        """Raw (not normalised) channels as one ``(C, Z, Y, X)`` float32 array, in the given order.

        Args:
            modalities: channel order (e.g. a checkpoint's); all present modalities when None.
        """
        modalities = tuple(modalities) if modalities is not None else self.modalities
        missing = [m for m in modalities if m not in self.images]
        if missing:
            raise InvalidInputError(
                f"Subject {self.name!r} ({self.folder}) lacks {', '.join(missing)}: found "
                f"{', '.join(self.modalities)}, expected {', '.join(modalities)}. Add the missing files "
                f"(e.g. {self.name}_{missing[0]}.nii.gz) or use a model trained on the modalities present."
            )
        return np.stack([self.images[m].data.astype(np.float32, copy=False) for m in modalities])


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
    image = _read_nifti(path)
    source = _read_voxels(image, path)
    source = _convert_voxels(source, path, kind)
    geometry = Geometry.from_affine(image.affine, source.shape, image.header, source_name=str(path))
    return Volume(geometry.to_canonical(source), geometry, nifti_stem(path), path, modality_of(path))


def find_subject_files(folder: str | Path) -> tuple[dict[str, Path], Path | None]:
    """Files of one subject folder: ``({modality: path} in MODALITIES order, mask path or None)``.

    Files are recognised by BIDS-like suffixes (``<sub>_FLAIR.nii.gz``, ``<sub>_T1w.nii``,
    ``<sub>_label-lesion_mask.nii.gz``; case-insensitive); other files are ignored.

    Raises:
        InvalidInputError: not a folder, no recognisable modality, a modality present twice, or the
            files of more than one subject.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(
            f"{folder}: not a folder. Expected a subject folder with files like sub-01_FLAIR.nii.gz."
        )
    by_role: dict[str, list[Path]] = {}
    prefixes: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        parsed = _parse_subject_filename(path)
        if parsed is not None:
            prefix, role = parsed
            by_role.setdefault(role, []).append(path)
            prefixes.setdefault(prefix, []).append(path)
    _check_one_subject(folder, prefixes)
    _check_no_duplicates(folder, by_role)
    images = {m: by_role[m][0] for m in MODALITIES if m in by_role}
    if not images:
        raise InvalidInputError(_no_modality_message(folder))
    mask = by_role.get(MASK_SUFFIX, [None])[0]
    return images, mask


def load_subject(folder: str | Path, *, resample: bool = False) -> Subject:
    """Read a subject folder: every modality as a canonical float32 `Volume`, plus the reference mask.

    Args:
        folder: the subject folder (see `find_subject_files`).
        resample: resample modalities and mask that are not on the FLAIR grid onto it (linear for
            images, nearest for the mask); a resampled volume takes the FLAIR's geometry, so saving
            it writes onto the FLAIR grid. When False such a mismatch raises `InvalidInputError`.
    """
    folder = Path(folder)
    image_paths, mask_path = find_subject_files(folder)
    images = {}
    for modality, path in image_paths.items():
        volume = load_volume(path, kind="image")
        volume.name = volume.modality = modality
        images[modality] = volume
    reference = images["FLAIR"] if "FLAIR" in images else next(iter(images.values()))
    for modality, volume in images.items():
        images[modality] = _on_reference_grid(volume, reference, resample=resample, kind="image")
    mask = None
    if mask_path is not None:
        mask = load_volume(mask_path, kind="mask")
        mask.name = "reference mask"
        mask = _on_reference_grid(mask, reference, resample=resample, kind="mask")
    name = _subject_name(folder, [*image_paths.values()])
    return Subject(name, folder, images, mask, reference=reference.modality or "")


def _on_reference_grid(volume: Volume, reference: Volume, *, resample: bool, kind: Literal["image", "mask"]) -> Volume:
    if volume is reference or volume.geometry.same_grid(reference.geometry):
        return volume
    if not resample:
        raise InvalidInputError(_grid_mismatch_message(volume, reference))
    return resample_volume(volume, reference.geometry, kind=kind)


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
    data = np.asarray(data)
    if tuple(data.shape) != geometry.shape:
        raise InvalidInputError(
            f"{path}: the array to write has shape {tuple(data.shape)} but its geometry expects {geometry.shape} "
            f"(canonical S, P, L; source {geometry.describe()})."
        )
    dtype = np.dtype(dtype) if dtype is not None else _storage_dtype(data)
    source = geometry.to_source(data.astype(dtype, copy=False))
    header = _output_header(geometry.header, dtype)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_class(source, geometry.affine, header)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


# --- napari layer metadata (plain dicts: the engine never imports napari) -----------------------------


def layer_metadata(
    geometry: Geometry, *, modality: str | None = None, path: str | Path | None = None
) -> dict[str, Any]:
    """The ``metadata`` dict of a napari layer showing a volume on `geometry`."""
    return {METADATA_KEY: {"geometry": geometry, "modality": modality, "path": None if path is None else str(path)}}


def geometry_from_layer_metadata(meta: Mapping[str, Any] | None) -> Geometry | None:
    """The `Geometry` stored in a layer's ``metadata`` (or in a layer state dict holding it), if any."""
    if not meta:
        return None
    if METADATA_KEY not in meta and isinstance(meta.get("metadata"), Mapping):
        meta = meta["metadata"]
    entry = meta.get(METADATA_KEY)
    geometry = entry.get("geometry") if isinstance(entry, Mapping) else None
    return geometry if isinstance(geometry, Geometry) else None


# --- File names ------------------------------------------------------------------------------------


def is_nifti_path(path: str | Path) -> bool:
    """Whether the file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def modality_of(path: str | Path) -> str | None:
    """Modality named by a BIDS-like suffix (``sub-01_T2w.nii.gz`` -> ``"T2w"``), else None."""
    parsed = _parse_subject_filename(Path(path))
    return parsed[1] if parsed is not None and parsed[1] in MODALITIES else None


def _parse_subject_filename(path: Path) -> tuple[str, str] | None:
    if path.name.startswith(".") or not is_nifti_path(path) or path.is_dir():
        return None
    match = _ROLE_PATTERN.match(nifti_stem(path))
    if match is None:
        return None
    return match["prefix"] or "", _ROLE_SPELLING[match["role"].lower()]


def _subject_name(folder: Path, paths: Sequence[Path]) -> str:
    parsed = _parse_subject_filename(paths[0])
    return parsed[0] if parsed is not None and parsed[0] else folder.resolve().name


def _check_one_subject(folder: Path, prefixes: dict[str, list[Path]]) -> None:
    if len(prefixes) > 1:
        listing = "; ".join(
            f"{prefix or '(no prefix)'}: {', '.join(p.name for p in paths)}" for prefix, paths in prefixes.items()
        )
        raise InvalidInputError(
            f"{folder}: holds the files of more than one subject ({listing}). Put each subject in its own folder."
        )


def _check_no_duplicates(folder: Path, by_role: dict[str, list[Path]]) -> None:
    for role, paths in by_role.items():
        if len(paths) > 1:
            raise InvalidInputError(
                f"{folder}: {role} is present {len(paths)} times ({', '.join(p.name for p in paths)}). "
                "Keep one file per modality."
            )


def _no_modality_message(folder: Path) -> str:
    niftis = sorted(p.name for p in folder.iterdir() if is_nifti_path(p) and not p.name.startswith("."))
    found = ", ".join(niftis[:8]) + (", ..." if len(niftis) > 8 else "") if niftis else "no NIfTI files"
    expected = ", ".join(f"<subject>_{m}.nii.gz" for m in MODALITIES)
    return (
        f"{folder}: no recognisable modality (found {found}). Expected files named {expected}, "
        f"and optionally <subject>_{MASK_SUFFIX}.nii.gz."
    )


# --- Voxel reading and checks -------------------------------------------------------------------------


def _read_nifti(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found.")
    if not is_nifti_path(path):
        raise InvalidInputError(f"{path}: not a NIfTI file name; expected a name ending in .nii.gz or .nii.")
    try:
        image = nib.load(str(path), mmap=False)
    except _READ_ERRORS as err:
        raise InvalidInputError(
            f"{path}: cannot be read as NIfTI ({err}). Is the file empty, truncated or of another format?"
        ) from err
    if not isinstance(image, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise InvalidInputError(f"{path}: is a {type(image).__name__}, not a NIfTI-1/2 image.")
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
    if len(shape) < 3:
        return tuple(shape) + (1,) * (3 - len(shape))  # type: ignore[return-value]
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


def _new_header(affine: np.ndarray, shape: tuple[int, ...]) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_sform(affine, code="scanner")
    header.set_qform(affine, code="scanner")
    header.set_xyzt_units(xyz="mm")
    return header


def _output_header(source: nib.Nifti1Header, dtype: np.dtype) -> nib.Nifti1Header:
    """The source header with this array's voxel type and no stale scaling or display range."""
    header = source.copy()
    header.set_data_dtype(dtype)
    header.set_slope_inter(None, None)
    header["cal_min"] = 0.0
    header["cal_max"] = 0.0
    header.set_intent("none")
    header["descrip"] = b"napari-lesionseg"
    return header


def _format_affine(affine: np.ndarray) -> str:
    rows = ("[" + ", ".join(f"{v:.4g}" for v in row) + "]" for row in np.asarray(affine)[:3])
    return "[" + ", ".join(rows) + "]"


def _grid_mismatch_message(volume: Volume, reference: Volume) -> str:
    what = "reference mask" if volume.modality is None else volume.modality
    return (
        f"{volume.path}: the {what} is not on the grid of the {reference.modality} {reference.path} "
        f"({what}: {volume.geometry.describe()}; {reference.modality}: {reference.geometry.describe()}). "
        "All modalities and the mask must share one voxel grid. Co-register them, or pass resample=True "
        "(CLI: --resample) to resample them onto the FLAIR grid."
    )
