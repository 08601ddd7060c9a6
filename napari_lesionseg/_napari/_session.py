"""State the docks share within one viewer: the inference runs made so far, and checkpoint changes.

The Inference dock records each finished run here; the Fusion explorer, the Lesion review and the
Fine-tune docks read the latest run (its fused probabilities per mode, grid, checkpoint) and listen
to `run_finished`. The Fine-tune dock emits `checkpoints_changed` so the selector lists a new model.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psygnal import Signal

if TYPE_CHECKING:
    from napari_lesionseg.data.geometry import Geometry
    from napari_lesionseg.engine.checkpoints import CheckpointMetadata
    from napari_lesionseg.engine.results import InferenceResult
    from napari_lesionseg.engine.settings import InferenceSettings

__all__ = ["RunRecord", "Session", "session_for"]


@dataclass(eq=False)
class RunRecord:
    """One inference run shown in the viewer.

    Attributes:
        name: short label used in layer names, e.g. ``"beta 1.5"``.
        checkpoint: metadata of the checkpoint that made it.
        settings: the inference settings used.
        result: the fused outputs (every fusion mode computed in the run).
        geometry: the grid of the input layers (for saving results and world coordinates).
        layers: role (``"probability"``, ``"mask"``, ``"uncertainty"``, ``"backdrop"``: the input
            FLAIR) -> layer name.
    """

    name: str
    checkpoint: CheckpointMetadata
    settings: InferenceSettings
    result: InferenceResult
    geometry: Geometry | None
    layers: dict[str, str] = field(default_factory=dict)


class Session:
    """The runs of one viewer and the signals docks use to follow each other."""

    run_finished = Signal(object)  # RunRecord
    threshold_changed = Signal(object)  # RunRecord whose mask was re-thresholded
    checkpoints_changed = Signal()

    def __init__(self) -> None:
        self.runs: list[RunRecord] = []

    @property
    def latest(self) -> RunRecord | None:
        """The most recent finished run, if any."""
        return self.runs[-1] if self.runs else None

    def record(self, run: RunRecord) -> None:
        """Remember a finished run (replacing an earlier one of the same name) and tell the docks."""
        self.runs = [r for r in self.runs if r.name != run.name] + [run]
        self.run_finished.emit(run)

    def forget_missing(self, layer_names: set[str]) -> None:
        """Drop the runs whose probability layer is no longer among `layer_names` (and their volumes)."""
        self.runs = [r for r in self.runs if r.layers.get("probability") in layer_names]


_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


def session_for(viewer: Any) -> Session:
    """The session of `viewer` (created on first use, dropped with the viewer)."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]
