"""The one place that reads and writes this package's entry in a napari layer's ``metadata``.

``layer.metadata["lesionseg"] = {"geometry": Geometry, "modality": str | None, "path": str | None}``:
plain dicts, so the writer and the docks find the source grid of any layer this package made.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_lesionseg.data.geometry import Geometry

__all__ = ["METADATA_KEY", "geometry_from_layer_metadata", "layer_metadata", "modality_from_layer_metadata", "path_from_layer_metadata"]


#: Key of this package's entry in a napari layer's ``metadata``.
METADATA_KEY = "lesionseg"


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
