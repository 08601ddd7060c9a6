"""napari writers: a Labels or Image layer -> NIfTI on the grid of the file it was read from.

npe2 single-layer writers, called as ``writer(path, data, meta)`` with the layer's state dict as
`meta`. A layer read by this plugin (or made by its widgets) carries its `io.Geometry` in
``meta["metadata"]["lesionseg"]``: the canonical array is written back with the source affine
(bit for bit), header and axis order. A layer without that geometry is still written, with a
`UserWarning` (napari shows it): its ``scale`` becomes the voxel size and its ``translate`` the
position of voxel 0, in an RAS-ordered file, so reading it back restores the same layer.

Labels are stored as uint8 when their values fit (larger integer types otherwise), images as
float32. Writes are atomic.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_lesionseg._napari.metadata import (
    acquired_from_layer_metadata,
    geometry_from_layer_metadata,
    path_from_layer_metadata,
)
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.volumes import save_volume
from napari_lesionseg.errors import InvalidInputError

__all__ = ["write_image", "write_labels"]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer to NIfTI on its source grid; returns the path written."""
    return [str(_write_layer(path, data, meta, layer_type="labels"))]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write an Image layer to NIfTI (float32) on its source grid; returns the path written."""
    return [str(_write_layer(path, data, meta, layer_type="image"))]


def _write_layer(path: str, data: Any, meta: Mapping[str, Any], *, layer_type: str) -> Path:
    name = meta.get("name", "layer")
    if meta.get("multiscale") or meta.get("rgb"):
        raise InvalidInputError(f"Layer {name!r}: multiscale and RGB layers cannot be written as one NIfTI volume.")
    array = np.asarray(data)
    if array.ndim != 3:
        raise InvalidInputError(f"Layer {name!r}: expected a 3-D layer to write as NIfTI, found shape {array.shape}.")
    if layer_type == "labels" and array.dtype.kind not in "biu":
        raise InvalidInputError(f"Layer {name!r}: labels must be integers, found dtype {array.dtype}.")
    geometry = geometry_from_layer_metadata(meta) or _geometry_from_scale(array, meta, name, path)
    if geometry.shape != array.shape:
        raise InvalidInputError(
            f"Layer {name!r} has shape {array.shape} but the grid it came from has shape {geometry.shape} "
            f"(source {geometry.describe()}); it cannot be written onto that grid."
        )
    _refuse_resampled_over_its_source(path, meta, name)
    dtype = None if layer_type == "labels" else np.float32
    return save_volume(array, geometry, path, dtype=dtype)


def _refuse_resampled_over_its_source(path: str, meta: Mapping[str, Any], name: str) -> None:
    """A modality shown on the FLAIR's grid would replace the scan it was read from with the resampled copy."""
    inner = meta.get("metadata") if isinstance(meta.get("metadata"), Mapping) else meta
    source, acquired = path_from_layer_metadata(inner), acquired_from_layer_metadata(inner)
    if source is not None and acquired is not None and _same_file(Path(path), source):
        raise InvalidInputError(
            f"Layer {name!r} was resampled onto another grid when it was opened; writing it to {source} would "
            f"replace the original scan ({acquired.describe()}) with the resampled copy. Choose another file name."
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _geometry_from_scale(array: np.ndarray, meta: Mapping[str, Any], name: str, path: str) -> Geometry:
    warnings.warn(
        f"Layer {name!r} has no source NIfTI geometry (it was not opened by napari-lesionseg); {path} is written "
        "with the layer's scale as voxel size (mm) and its translate as origin, in RAS orientation.",
        UserWarning,
        stacklevel=3,
    )
    scale = meta.get("scale", (1.0, 1.0, 1.0))
    translate = meta.get("translate", (0.0, 0.0, 0.0))
    return Geometry.from_layer_scale(array.shape, scale, translate)
