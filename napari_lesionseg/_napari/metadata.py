"""The one place that reads and writes this package's entry in a napari layer's ``metadata``.

``layer.metadata["lesionseg"] = {"geometry": Geometry, "modality": str | None, "path": str | None}``:
plain dicts, so the writer and the docks find the source grid of any layer this package made. A
corrected mask made from a prediction also keeps that prediction (``"started_from"``, a boolean
array), so that a fine-tune learns from what the user changed (`training.correction_sampling`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_lesionseg.data.geometry import Geometry

__all__ = [
    "METADATA_KEY",
    "acquired_from_layer_metadata",
    "geometry_from_layer_metadata",
    "layer_metadata",
    "modality_from_layer_metadata",
    "path_from_layer_metadata",
    "started_from_layer_metadata",
    "subject_from_layer_metadata",
    "with_started_from",
]


#: Key of this package's entry in a napari layer's ``metadata``.
METADATA_KEY = "lesionseg"


def layer_metadata(
    geometry: Geometry,
    *,
    modality: str | None = None,
    path: str | Path | None = None,
    acquired: Geometry | None = None,
    subject: Path | None = None,
) -> dict[str, Any]:
    """The ``metadata`` dict of a napari layer showing a volume on `geometry` (`acquired`: the grid it was read on,
    when it was resampled onto `geometry`; the prediction then knows where it holds data, `engine.coverage`;
    `subject`: the folder of the subject a layer made in the viewer belongs to, e.g. a run's mask)."""
    entry = {"geometry": geometry, "modality": modality, "path": None if path is None else str(path)}
    if acquired is not None:
        entry["acquired"] = acquired
    if subject is not None:
        entry["subject"] = str(subject)
    return {METADATA_KEY: entry}


def subject_from_layer_metadata(meta: Mapping[str, Any] | None) -> Path | None:
    """The folder of the subject a layer belongs to: the one recorded, else its file's folder, else None."""
    entry = (meta or {}).get(METADATA_KEY)
    subject = entry.get("subject") if isinstance(entry, Mapping) else None
    if subject:
        return Path(subject)
    path = path_from_layer_metadata(meta)
    return None if path is None else path.resolve().parent


def acquired_from_layer_metadata(meta: Mapping[str, Any] | None) -> Geometry | None:
    """The grid a resampled layer's volume was acquired on, if recorded."""
    entry = (meta or {}).get(METADATA_KEY)
    acquired = entry.get("acquired") if isinstance(entry, Mapping) else None
    return acquired if isinstance(acquired, Geometry) else None


def geometry_from_layer_metadata(meta: Mapping[str, Any] | None) -> Geometry | None:
    """The `Geometry` stored in a layer's ``metadata`` (or in a layer state dict holding it), if any."""
    if not meta:
        return None
    if METADATA_KEY not in meta and isinstance(meta.get("metadata"), Mapping):
        meta = meta["metadata"]
    entry = meta.get(METADATA_KEY)
    geometry = entry.get("geometry") if isinstance(entry, Mapping) else None
    return geometry if isinstance(geometry, Geometry) else None


def modality_from_layer_metadata(meta: Mapping[str, Any] | None) -> str | None:
    """The modality a layer was loaded as (``"FLAIR"``...), if this package loaded it."""
    entry = (meta or {}).get(METADATA_KEY)
    modality = entry.get("modality") if isinstance(entry, Mapping) else None
    return modality if isinstance(modality, str) and modality else None


def path_from_layer_metadata(meta: Mapping[str, Any] | None) -> Path | None:
    """The file a layer was loaded from, if recorded."""
    entry = (meta or {}).get(METADATA_KEY)
    path = entry.get("path") if isinstance(entry, Mapping) else None
    return Path(path) if path else None


def with_started_from(meta: Mapping[str, Any], prediction: Any) -> dict[str, Any]:
    """A copy of `meta` that also records the prediction a corrected mask started from (as a boolean copy)."""
    import numpy as np

    meta = dict(meta)
    meta[METADATA_KEY] = {**dict(meta.get(METADATA_KEY) or {}), "started_from": np.asarray(prediction) != 0}
    return meta


def started_from_layer_metadata(meta: Mapping[str, Any] | None, shape: tuple[int, ...]) -> Any:
    """The prediction a corrected mask started from, if recorded and of `shape`; else None."""
    entry = (meta or {}).get(METADATA_KEY)
    started = entry.get("started_from") if isinstance(entry, Mapping) else None
    return started if started is not None and tuple(started.shape) == tuple(shape) else None
