"""The runs whose layers the Inference dock shows: the earlier runs a new one replaces, each finished run's record
(shared with the other docks through the viewer's `Session`), the masks' outlines and the latest mask's threshold."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Layer

from napari_lesionseg._napari._run_layers import PARTIAL_SUFFIX, result_layer_names
from napari_lesionseg._napari._session import RunRecord, Session
from napari_lesionseg._napari.metadata import geometry_from_layer_metadata

if TYPE_CHECKING:
    import napari

__all__ = ["ShownRuns", "grid_spacing"]


class ShownRuns:
    """`records`: the finished runs whose layers the dock shows, by run name (oldest first); `names`: every run
    whose layers the dock added, finished or not."""

    def __init__(self, viewer: napari.viewer.Viewer, session: Session) -> None:
        self._viewer = viewer
        self._session = session
        self.records: dict[str, RunRecord] = {}
        self.names: set[str] = set()

    def start(self, name: str, *, keep: bool) -> list[str]:
        """Make way for run `name` (replacing an earlier run of that name, and every other run unless `keep`);
        returns the layer names of the runs it replaces, with what is left of a cancelled one (its partial probability)."""
        stale = [] if keep else [run for run in self.names if run != name]
        for old in stale:
            self.records.pop(old, None)
            self.names.discard(old)
        self.records.pop(name, None)
        self.names.add(name)
        replaced = [layer for old in stale for layer in result_layer_names(old).values()]
        return replaced + [result_layer_names(run)["probability"] + PARTIAL_SUFFIX for run in (*stale, name)]

    def record(self, record: RunRecord) -> None:
        """Keep a finished run, and tell the other docks."""
        self.records[record.name] = record
        self._session.record(record)

    def outline(self, outlined: bool) -> None:
        """Draw every shown run's mask as outlines (or filled again)."""
        for record in self.records.values():
            name = record.layers.get("mask")
            if name in self._viewer.layers:
                self._viewer.layers[name].contour = 1 if outlined else 0

    def rethreshold(self, threshold: float, mask: Callable[[np.ndarray, Sequence[float]], np.ndarray]) -> None:
        """Recompute the current run's mask with `mask(probability, spacing)` (the latest finished run; kept runs
        keep their threshold) and record `threshold` as its own."""
        record = next(reversed(self.records.values()), None)
        if record is None:
            return
        mask_name = record.layers.get("mask")
        if mask_name in self._viewer.layers:
            layer = self._viewer.layers[mask_name]
            layer.data[...] = mask(record.result.probability, grid_spacing(layer))
            layer.refresh()
        record.settings = dataclasses.replace(record.settings, threshold=threshold)
        self._session.threshold_changed.emit(record)

    def forget_removed(self, event: Any = None) -> None:
        """Drop the records of runs whose probability layer the user removed (their volumes go with them)."""
        present = {layer.name for layer in self._viewer.layers}
        for name in [n for n, r in self.records.items() if r.layers.get("probability") not in present]:
            del self.records[name]
        self._session.forget_missing(present)


def grid_spacing(layer: Layer) -> tuple[float, ...]:
    """The voxel size (mm) of a layer's grid: its recorded geometry's, else its scale."""
    geometry = geometry_from_layer_metadata(layer.metadata)
    return tuple(float(v) for v in (geometry.spacing if geometry is not None else layer.scale[-3:]))
