"""NIfTI header checks made before the voxels are read: declared size, voxel sizes, qform/sform.

* **Declared size.** The voxel data a header declares must fit in the file (an uncompressed file
  holds it byte for byte; gzip cannot compress more than about 1032:1) and in the memory budget
  (`napari_lesionseg._memory`), so a bad header is refused naming the file instead of ending in a
  bare `MemoryError`.
* **Voxel sizes.** A zero, negative or non-finite voxel size (``pixdim``) is a `GeometryWarning`
  when the sform gives the geometry anyway; without an sform nibabel would silently read a zero
  size as 1 mm, so the file is refused (volumes in mL would be wrong).
* **qform/sform.** Both set but placing the volume more than half a voxel apart: a
  `GeometryWarning` (the sform is used, as nibabel and FSL do). Neither set: a warning too, since
  position and orientation are then unknown.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from napari_lesionseg._memory import format_bytes, memory_budget
from napari_lesionseg.errors import GeometryWarning, InvalidInputError

__all__ = ["GZIP_MAX_RATIO", "check_header", "read_bytes_needed"]

#: Deflate's largest compression ratio (runs of one byte), rounded up.
GZIP_MAX_RATIO = 1100
#: Bytes per voxel a read needs beyond the file's own type: the float32 copy and its canonical copy.
_READ_COPIES_BYTES = 8
#: qform and sform may place the volume this many voxels apart before a warning.
_QFORM_SFORM_TOLERANCE_VOXELS = 0.5


def check_header(image: nib.Nifti1Image, path: Path) -> None:
    """Refuse a header whose data cannot be in the file or in memory, or whose geometry is unknowable; warn on doubtful geometry."""
    _check_declared_size(image, path)
    raw = _raw_header(image, path)
    if _check_voxel_sizes(raw, image, path):  # a qform built from bad voxel sizes says nothing more
        _check_qform_sform(raw, path)


def read_bytes_needed(image: nib.Nifti1Image) -> int:
    """Memory a read of `image`'s voxels takes: the stored voxels plus the float32 working copies."""
    voxels = int(np.prod([int(n) for n in image.header.get_data_shape()], dtype=object))
    return voxels * (image.get_data_dtype().itemsize + _READ_COPIES_BYTES)


def _check_declared_size(image: nib.Nifti1Image, path: Path) -> None:
    header = image.header
    shape = tuple(int(n) for n in header.get_data_shape())
    stored = int(np.prod(shape, dtype=object)) * image.get_data_dtype().itemsize
    end = int(header.get_data_offset()) + stored
    size = path.stat().st_size
    compressed = path.name.lower().endswith(".gz")
    if end > (size * GZIP_MAX_RATIO if compressed else size):
        kind = "a gzip file this small cannot hold them" if compressed else "the file is too short"
        raise InvalidInputError(
            f"{path}: the header declares {'x'.join(map(str, shape))} voxels of {image.get_data_dtype()} "
            f"({format_bytes(stored)}) but the file has {format_bytes(size)}: {kind}. The header is wrong or "
            "the file is truncated."
        )
    needed, budget = read_bytes_needed(image), memory_budget()
    if needed > budget:
        raise InvalidInputError(
            f"{path}: reading its {'x'.join(map(str, shape))} voxels needs about {format_bytes(needed)} of memory, "
            f"more than the {format_bytes(budget)} available. Crop or downsample the volume, or free memory."
        )


def _raw_header(image: nib.Nifti1Image, path: Path) -> nib.Nifti1Header:
    """The header as stored: nibabel's loaded header has zero/negative voxel sizes already 'fixed'."""
    try:
        with ImageOpener(str(path)) as handle:
            return type(image.header).from_fileobj(handle, check=False)
    except Exception:  # noqa: BLE001 (nibabel read the header once already; fall back to its copy)
        return image.header


def _check_voxel_sizes(raw: nib.Nifti1Header, image: nib.Nifti1Image, path: Path) -> bool:
    """Refuse or warn on bad voxel sizes; True when they are all positive."""
    ndim = min(3, max(1, int(raw["dim"][0])))
    sizes = np.asarray(raw["pixdim"][1 : 1 + ndim], dtype=np.float64)
    has_sform = int(raw["sform_code"]) > 0
    bad = ~np.isfinite(sizes) | (sizes <= 0)
    if not bad.any():
        return True
    listed = " x ".join(f"{s:g}" for s in sizes)
    unusable = ~np.isfinite(sizes) | (sizes == 0)
    if unusable.any() and not has_sform:
        raise InvalidInputError(
            f"{path}: its voxel size (pixdim) is {listed} mm and it has no sform to take the geometry from; "
            "nibabel would read it as 1 mm, so sizes and volumes in mL would be wrong. Set the real voxel size "
            "in the header (e.g. nibabel's header.set_zooms) and load it again."
        )
    spacing = " x ".join(f"{s:.4g}" for s in np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0)))
    source = "the sform gives" if has_sform else "read as their absolute values:"
    warnings.warn(
        f"{path}: its header lists voxel sizes {listed} mm (zero or negative); {source} {spacing} mm.",
        GeometryWarning,
        stacklevel=4,
    )
    return False


def _check_qform_sform(raw: nib.Nifti1Header, path: Path) -> None:
    qcode, scode = int(raw["qform_code"]), int(raw["sform_code"])
    if qcode == 0 and scode == 0:
        warnings.warn(
            f"{path}: its header has neither a qform nor an sform, so its position and orientation in the "
            "scanner are unknown; it is placed by its voxel sizes alone.",
            GeometryWarning,
            stacklevel=4,
        )
        return
    if qcode == 0 or scode == 0:
        return
    qform, sform = raw.get_qform(), raw.get_sform()
    if not (np.isfinite(qform).all() and np.isfinite(sform).all()):
        return  # Geometry refuses a non-finite affine with its own message
    shape = [max(int(n), 1) for n in raw.get_data_shape()[:3]] + [1] * (3 - len(raw.get_data_shape()[:3]))
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, n - 1) for n in shape])]).T
    apart = float(np.linalg.norm((qform - sform)[:3] @ corners, axis=0).max())
    voxel = float(np.sqrt((sform[:3, :3] ** 2).sum(axis=0)).min())
    if apart > _QFORM_SFORM_TOLERANCE_VOXELS * voxel:
        warnings.warn(
            f"{path}: its qform and sform place the volume up to {apart:.3g} mm apart (more than half a "
            f"{voxel:.3g} mm voxel); the sform is used, as nibabel and FSL do. If a tool updated only one of "
            "them, make the other agree.",
            GeometryWarning,
            stacklevel=4,
        )
