"""Where a canonical (S, P, L) array sits in the scanner, and how to put it back in its file.

Every volume is brought to one canonical orientation, array axes (S, P, L): axis 0 inferior ->
superior, axis 1 anterior -> posterior, axis 2 right -> left (see docs/ARCHITECTURE.md). The
reorientation is a pure axis permutation/flip (nibabel orientation tools), never an interpolation,
and `Geometry` keeps the source affine (bit for bit), header and shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from napari_lesionseg.errors import InvalidInputError

__all__ = ["CANONICAL_AXCODES", "Geometry", "format_affine"]


#: Anatomical direction each canonical array axis points to (nibabel axis codes).
CANONICAL_AXCODES: tuple[str, str, str] = ("S", "P", "L")


_CANONICAL_ORNT = axcodes2ornt(CANONICAL_AXCODES)


#: Relative tolerance (of the voxel size) under which two grids count as the same.
_GRID_TOLERANCE = 1e-3


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
                f"{format_affine(affine)}. Fix the file's sform/qform."
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
    def source_spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the file's own axes, as FSL, ITK-SNAP and nibabel list it."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

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
        return f"shape {self.source_shape}, affine {format_affine(self.affine)}"

    def _check_shape(self, array: np.ndarray, expected: tuple[int, ...], which: str) -> None:
        if tuple(array.shape) != tuple(expected):
            raise InvalidInputError(
                f"Array of shape {tuple(array.shape)} does not fit the {which} grid {tuple(expected)}."
            )


def _new_header(affine: np.ndarray, shape: tuple[int, ...]) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_sform(affine, code="scanner")
    header.set_qform(affine, code="scanner")
    header.set_xyzt_units(xyz="mm")
    return header


def format_affine(affine: np.ndarray) -> str:
    rows = ("[" + ", ".join(f"{v:.4g}" for v in row) + "]" for row in np.asarray(affine)[:3])
    return "[" + ", ".join(rows) + "]"
