"""The corrected mask's place on disk, as the Lesion review dock finds it from the viewer's layers: which
layer is the subject's, where its corrections are autosaved, which files are references (never written),
and the autosave to offer back when a subject is reopened."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Layer
from napari.utils.notifications import show_error, show_info

from napari_lesionseg._napari._autosave import AutosaveTarget
from napari_lesionseg._napari._layers import CORRECTED_COLOR, check_save_as, single_color_labels
from napari_lesionseg._napari.metadata import (
    geometry_from_layer_metadata,
    layer_metadata,
    path_from_layer_metadata,
    subject_from_layer_metadata,
    with_started_from,
)
from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.corrections import (
    corrected_mask_path,
    find_corrected_mask,
    load_corrected_mask,
    save_corrected_mask,
)
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.naming import nifti_stem, subject_of
from napari_lesionseg.errors import InvalidInputError, LesionSegError

if TYPE_CHECKING:
    import napari

__all__ = ["CORRECTED_NAME", "CorrectedMasks", "grid_metadata", "no_grid_message", "source_path"]

#: Name of the corrected mask layer the dock creates.
CORRECTED_NAME = "corrected mask"


class CorrectedMasks:
    """Creates, restores and saves the corrected mask of the subject open in `viewer`."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer

    def new_from(self, prediction: Labels | None) -> Labels | None:
        """Add a corrected mask layer initialised from `prediction` and return it."""
        if prediction is None:
            show_error("Choose a prediction first: the corrected mask starts as a copy of it.")
            return None
        layer = self._viewer.add_labels(
            (np.asarray(prediction.data) != 0).astype(np.uint8),
            name=CORRECTED_NAME,
            scale=prediction.scale,
            translate=prediction.translate,
            metadata=with_started_from(grid_metadata(prediction, self.subject_geometry(prediction)), prediction.data),
            opacity=0.6,
            **single_color_labels(CORRECTED_COLOR),
        )
        return layer

    def restore(self) -> Labels | None:
        """Add the subject's autosaved corrected mask as a layer and return it."""
        found = self.autosave_on_disk()
        if found is None:
            show_error("There are no autosaved corrections for the open subject.")
            return None
        path, source = found
        try:
            data = load_corrected_mask(path, shape=np.shape(source.data))
        except LesionSegError as err:
            show_error(str(err))
            return None
        layer = self._viewer.add_labels(
            data,
            name=CORRECTED_NAME,
            scale=source.scale,
            translate=source.translate,
            metadata=layer_metadata(geometry_from_layer_metadata(source.metadata), path=path),
            opacity=0.6,
            **single_color_labels(CORRECTED_COLOR),
        )
        show_info(f"Restored the corrections saved in {path}")
        return layer

    def save(self, layer: Labels | None, chosen: str | Path | None) -> Path | None:
        """Write `layer` to `chosen` (default: its autosave file), never over a reference mask."""
        if layer is None:
            show_error("There is no corrected mask to save: create one from the prediction first.")
            return None
        target = self.autosave_target(layer)
        try:
            if target is None:
                raise InvalidInputError(no_grid_message(layer))
            destination = Path(chosen) if chosen and str(chosen) not in ("", ".") else target.path
            if destination != target.path:  # a path the user chose: the output policy of every command
                check_save_as(self._viewer, destination)
            written = save_corrected_mask(layer.data, target.geometry, destination, protected=target.protected)
        except LesionSegError as err:
            show_error(str(err))
            return None
        show_info(f"Saved {layer.name!r} to {written}")
        return written

    def autosave_target(self, layer: Labels) -> AutosaveTarget | None:
        """Where `layer` is autosaved: beside its subject's files, on the subject's grid."""
        subject_layer = self.subject_layer(np.shape(layer.data), prefer=layer)
        if subject_layer is None:
            return None
        folder, name = subject_of(source_path(subject_layer))
        geometry = geometry_from_layer_metadata(layer.metadata) or geometry_from_layer_metadata(subject_layer.metadata)
        if geometry is None:
            return None
        restored = source_path(layer)
        return AutosaveTarget(
            path=corrected_mask_path(folder, name),
            geometry=geometry,
            fallback=(folder, name),
            protected=tuple(self.reference_files()),
            restored_from=restored if restored is not None and subject_of(restored) is not None else None,
        )

    def subject_layer(self, shape: tuple[int, ...], prefer: Layer | None = None) -> Layer | None:
        """A layer read from a subject file, on a grid of `shape` (`prefer` first; of `prefer`'s subject, if it has one)."""
        candidates = ([prefer] if prefer is not None else []) + list(self._viewer.layers)
        subject = subject_from_layer_metadata(prefer.metadata) if prefer is not None else None
        for layer in candidates:
            path = source_path(layer)
            on_grid = path is not None and subject_of(path) is not None and np.shape(layer.data) == tuple(shape)
            if on_grid and subject in (None, subject_from_layer_metadata(layer.metadata)):
                return layer
        return None

    def subject_geometry(self, layer: Layer) -> Geometry | None:
        geometry = geometry_from_layer_metadata(layer.metadata)
        if geometry is None:
            subject_layer = self.subject_layer(np.shape(layer.data))
            geometry = geometry_from_layer_metadata(subject_layer.metadata) if subject_layer is not None else None
        return geometry

    def reference_files(self) -> list[Path]:
        paths = [source_path(layer) for layer in self._viewer.layers]
        return [p for p in paths if p is not None and nifti_stem(p).lower().endswith(MASK_SUFFIX.lower())]

    def autosave_on_disk(self) -> tuple[Path, Layer] | None:
        """The open subject's autosaved corrections and a layer of that subject, if any."""
        for layer in self._viewer.layers:
            path = source_path(layer)
            parsed = subject_of(path) if path is not None else None
            if parsed is not None and geometry_from_layer_metadata(layer.metadata) is not None:
                found = find_corrected_mask(*parsed)
                if found is not None:
                    return found, layer
        return None


def source_path(layer: Layer) -> Path | None:
    return path_from_layer_metadata(layer.metadata)


def grid_metadata(layer: Layer, geometry: Geometry | None) -> dict[str, Any]:
    """Metadata on `geometry`, belonging to `layer`'s subject."""
    subject = subject_from_layer_metadata(layer.metadata)
    return layer_metadata(geometry, subject=subject) if geometry is not None else {}


def no_grid_message(layer: Labels) -> str:
    return (
        f"{layer.name!r} is not on the grid of a subject opened from NIfTI files (open the subject with this "
        "plugin, then create the corrected mask from a prediction on it)"
    )
