"""The Inference dock: choose a checkpoint (its beta) and the input layers, segment, watch it fill in.

Thin by design: the run is `engine.predict.iter_predict` (the one prediction entry point) in a generator thread worker that yields every
`ProgressEvent`; the dock pastes each event's partial probability into the probability layer at its
box, outlines the batch's patches and moves the progress bar, so the viewer never freezes. Cancel
sets the run's `CancelToken` and quits the worker (the run stops within one batch). Every fusion
mode the Fusion explorer compares is fused in the same run, and each finished run is recorded in
the viewer's `Session` for the other docks.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, ProgressBar, PushButton
from napari.layers import Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer

from napari_lesionseg._napari._inference_job import InferenceFailed, box_slices, inference_job, pause_worker_after
from napari_lesionseg._napari._mask_controls import MaskControls
from napari_lesionseg._napari._model_inputs import ModelInputs
from napari_lesionseg._napari._notify import notify_or_raise
from napari_lesionseg._napari._orientation import show_radiological
from napari_lesionseg._napari._run_layers import (
    MASK_COLOR,
    PARTIAL_SUFFIX,
    PROBABILITY_COLORMAP,
    UNCERTAINTY_COLORMAP,
    LayerSteps,
    RunLayers,
    result_layer_names,
)
from napari_lesionseg._napari._run_options import RunOptions
from napari_lesionseg._napari._scroll import scroll_contents
from napari_lesionseg._napari._session import RunRecord, session_for
from napari_lesionseg._napari._shown_runs import ShownRuns, grid_spacing
from napari_lesionseg._napari._status_box import status_box
from napari_lesionseg._napari.metadata import acquired_from_layer_metadata, geometry_from_layer_metadata
from napari_lesionseg._progress import REDRAW_INTERVAL_S, CancelToken, RedrawThrottle
from napari_lesionseg.engine.catalog import auto_run_name
from napari_lesionseg.engine.checkpoints import CheckpointInfo, CheckpointMetadata
from napari_lesionseg.engine.devices import resolve_device
from napari_lesionseg.engine.predict import check_normalisation, check_not_blank
from napari_lesionseg.engine.results import InferenceResult, ProgressEvent
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.evaluation.lesion_size import mask_volume_ml

if TYPE_CHECKING:
    import napari

__all__ = ["MASK_COLOR", "PROBABILITY_COLORMAP", "UNCERTAINTY_COLORMAP", "InferenceWidget"]


@dataclass(eq=False)
class _ActiveRun:
    """What the dock keeps while a run goes on."""

    name: str
    checkpoint: CheckpointInfo
    settings: InferenceSettings
    reference: Layer
    layers: RunLayers
    cancel: CancelToken = field(default_factory=CancelToken)
    layers_ready: threading.Event = field(default_factory=threading.Event)
    latest: ProgressEvent | None = None
    throttle: RedrawThrottle = field(default_factory=lambda: RedrawThrottle(REDRAW_INTERVAL_S["cpu"]))


class InferenceWidget(Container):
    """Segment the loaded modalities with a checkpoint, live, and show the results as layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        show_radiological(viewer)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._worker: Any = None
        self._active: _ActiveRun | None = None
        self._shown = ShownRuns(viewer, self._session)

        self._model = ModelInputs(viewer, status=self._set_status)
        self._steps = LayerSteps(self.native)
        self._options = RunOptions()
        self._run_button = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(min=0, max=1, value=0, label="Progress")
        self._status = status_box()
        self._mask_controls = MaskControls(on_change=self._apply_threshold)
        self._threshold = self._mask_controls.threshold
        self._outline = CheckBox(text="Mask as outlines (see the lesions under it)", value=False)

        self._build_layout()
        self._connect_events()
        self.refresh_checkpoints()
        scroll_contents(self)  # fits a laptop screen

    # --- public API ---------------------------------------------------------------------------

    def run(self, *, pause_after: int | None = None) -> Any:
        """Start segmenting the chosen input layers off the GUI thread; returns the worker (None on bad input).

        Args:
            pause_after: pause the worker right after this many batches, before the next one (for
                screenshots of a run midway; then `cancel()` or ``worker.resume()``).

        The worker's ``yielded`` signal carries each `ProgressEvent`; slots connected to it run after
        the dock has pasted the batch into the layers (the canvas redraws on the next event-loop pass).
        """
        if self._worker is not None:  # a finished run's last layer steps do not stop a new one
            show_info("Inference is already running: cancel it first.")
            return None
        try:
            checkpoint = self._model.selected()
            check_normalisation(checkpoint.metadata)
            layers = self._model.input_layers(checkpoint.metadata)
            check_not_blank({f"{modality} (layer {layer.name!r})": layer.data for modality, layer in layers.items()})  # before any layer is replaced
            reference = next(iter(layers.values()))
            settings = self._settings(checkpoint.metadata, reference)
        except LesionSegError as err:
            self._status.value = "Cannot run (see the notification)."
            show_error(str(err))
            return None
        self._active = self._start_run(checkpoint, settings, reference)
        self._set_running(True)
        self._worker = create_worker(
            inference_job,
            {modality: layer.data for modality, layer in layers.items()},
            checkpoint.path,
            settings,
            self._active.cancel,
            self._active.layers_ready,
            geometry=geometry_from_layer_metadata(reference.metadata),  # runs in the model's space
            acquired={m: g for m, layer in layers.items() if (g := acquired_from_layer_metadata(layer.metadata))},
            _start_thread=False,
            _connect={
                "yielded": self._on_progress,
                "returned": self._on_result,
                "errored": self._on_error,
                "aborted": self._on_aborted,
                "finished": self._on_worker_finished,
            },
        )
        if pause_after is not None:
            pause_worker_after(self._worker, pause_after)
        self._worker.start()
        self._steps.start(self._active.layers, self._active.layers_ready.set)
        return self._worker

    def cancel(self) -> None:
        """Stop the running inference before its next batch (the probability so far stays shown)."""
        if self._active is not None:
            self._active.cancel.cancel()
        if self._worker is not None:
            self._worker.quit()

    def set_threshold(self, value: float) -> None:
        """Move the threshold slider: the current run's mask is recomputed from its probability at once."""
        self._threshold.value = value
        self._mask_controls.apply_now()

    def set_min_lesion_mm3(self, value: float) -> None:
        """Set the minimum lesion size (mm^3, 0 keeps every lesion): the current run's mask follows at once."""
        self._mask_controls.min_lesion.value = value
        self._mask_controls.apply_now()

    def set_options(
        self,
        *,
        fusion: str | None = None,
        overlap: float | None = None,
        tta: bool | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        run_name: str | None = None,
        keep_runs: bool | None = None,
        brain_only: bool | None = None,
    ) -> None:
        """Set the run options as a user would (None leaves one as it is): fusion mode, overlap, the paper's
        test-time flips, device, patches per call, run name ("" for "beta 1.5"), keep earlier runs,
        lesions inside the brain only."""
        self._options.configure(
            fusion=fusion,
            overlap=overlap,
            tta=tta,
            device=device,
            batch_size=batch_size,
            run_name=run_name,
            keep_runs=keep_runs,
            brain_only=brain_only,
        )

    def reset_choices(self, *_: Any) -> None:
        """Refresh the input layer choices (napari calls this on layer changes; checkpoints refresh apart)."""
        self._model.refresh_inputs()

    def open_folder(self, folder: str | Path) -> Any:
        """Load a subject folder off the GUI thread and add its modalities as input layers; returns the worker."""
        return self._model.open_folder(folder)

    def refresh_checkpoints(self) -> None:
        """Re-read the user's and the bundled checkpoints into the selector (keeps the selection)."""
        self._model.refresh_checkpoints()

    def select_checkpoint(self, name: str) -> None:
        """Select the checkpoint called `name` (file stem), as one click on it would."""
        self._model.select(name)

    @property
    def checkpoint_names(self) -> list[str]:
        """Names of the checkpoints the selector lists, in order."""
        return [info.name for info in self._model.checkpoints]

    @property
    def busy(self) -> bool:
        """Whether an inference is running, or its layers are still being added or removed."""
        return self._worker is not None or self._steps.busy

    @property
    def progress(self) -> tuple[int, int]:
        """``(patches done, patches in the grid)`` as the progress bar shows them (drawn, not just received)."""
        return int(self._progress.value), int(self._progress.max)

    @property
    def runs(self) -> dict[str, RunRecord]:
        """The finished runs whose layers this dock shows, by run name."""
        return dict(self._shown.records)

    # --- layout and events --------------------------------------------------------------------

    def _build_layout(self) -> None:
        buttons = Container(layout="horizontal", labels=False, widgets=[self._run_button, self._cancel_button])
        self._outline.changed.connect(lambda: self._shown.outline(self._outline.value))
        self.extend(
            [
                self._model,
                Label(value="<b>Options</b>"),
                self._options,
                buttons,
                self._progress,
                self._status,
                Label(value="<b>Result</b>"),
                self._mask_controls,
                self._outline,
            ]
        )

    def _connect_events(self) -> None:
        self._run_button.changed.connect(lambda: self.run())
        self._cancel_button.changed.connect(self.cancel)
        self._session.checkpoints_changed.connect(self.refresh_checkpoints)
        self._viewer.layers.events.removed.connect(self._shown.forget_removed)

    def _settings(self, metadata: CheckpointMetadata, reference: Layer) -> InferenceSettings:
        threshold, displayed = float(self._threshold.value), self._displayed_slice(reference)
        return self._options.settings(metadata, threshold=threshold, priority_slice=displayed)

    def _displayed_slice(self, reference: Layer) -> int:
        """The index, in `reference`'s voxels, of the slice the slider shows (the patches to do first)."""
        position = reference.world_to_data(self._viewer.dims.point)[0]
        return int(np.clip(np.floor(position + 0.5), 0, reference.data.shape[0] - 1))

    # --- the run ------------------------------------------------------------------------------

    def _start_run(self, checkpoint: CheckpointInfo, settings: InferenceSettings, reference: Layer) -> _ActiveRun:
        """The run's result arrays; its layers (and the removal of stale ones) follow a step per pass."""
        name = self._options.run_name.value.strip() or auto_run_name(checkpoint, self._model.checkpoints)
        stale_layers = self._shown.start(name, keep=self._options.keep.value)
        style = len(self._shown.names) - 1  # each kept run in its own colours
        layers = RunLayers(self._viewer, result_layer_names(name), reference, stale=stale_layers, style=style)
        self._status.value = f"{name}: loading the checkpoint and normalising the images..."
        self._set_progress(0, 1)
        throttle = RedrawThrottle.for_device(resolve_device(settings.device).type)
        return _ActiveRun(name, checkpoint, settings, reference, layers, throttle=throttle)

    def _on_progress(self, event: ProgressEvent) -> None:
        """Paste the batch's fused probability (and mask) at once; redraw once per event-loop pass."""
        run = self._active
        if run is None:
            return
        if event.partial is not None:
            where = box_slices(event.box)
            run.layers.probability_data[where] = event.partial
            run.layers.mask_data[where] = event.partial >= self._threshold.value
        run.latest = event
        if event.message:
            show_warning(event.message)
        wait_s = run.throttle.request()  # batches that arrive within one redraw interval are drawn together
        if wait_s is not None:
            QTimer.singleShot(round(1000 * wait_s), self._show_progress)

    def _show_progress(self) -> None:
        run = self._active
        if run is None or run.latest is None:
            return
        run.throttle.drawn()
        event = run.latest
        run.layers.refresh()
        run.layers.set_boxes(event.patch_boxes)
        self._set_progress(event.done, event.total)
        self._status.value = f"{run.name}: {event.done} / {event.total} patches"

    def _set_status(self, text: str) -> None:
        self._status.value = text

    def _set_progress(self, done: int, total: int) -> None:
        """Move the progress bar without QProgressBar's synchronous repaint (slow beside a GL canvas)."""
        bar = self._progress.native
        bar.setUpdatesEnabled(False)
        self._progress.max = max(total, 1)
        self._progress.value = done
        bar.setUpdatesEnabled(True)
        bar.update()

    def _on_result(self, result: InferenceResult) -> None:
        run = self._active
        if run is None:
            return
        if not result.completed:  # the cancel token stopped the engine before `quit` reached the worker
            self._on_aborted()
            return
        run.latest = None  # a redraw still queued must not overwrite the final state
        layers = run.layers
        layers.finish()
        self._steps.start(run.layers, run.layers_ready.set)
        layers.probability_data[...] = result.probability
        layers.mask_data[...] = self._mask_controls.mask(result.probability, grid_spacing(run.reference))
        if result.uncertainty is not None:
            layers.uncertainty_data[...] = result.uncertainty
        else:
            layers.remove_uncertainty()
        layers.refresh()
        self._set_progress(result.done, result.total)
        self._record(run, result)
        space = result.model_space.describe() if result.model_space is not None else None
        self._status.value = (
            f"{run.name}: {result.total} patches in {result.timings['total']:.1f} s on {result.device}, "
            f"lesion volume {mask_volume_ml(layers.mask_data, grid_spacing(run.reference)):.2f} mL at threshold "
            f"{self._threshold.value:g}"
            + (f" ({'; '.join(result.messages)})" if result.messages else "")
            + (f". {_sentence(space)}" if space is not None and space not in result.messages else "")
        )

    def _record(self, run: _ActiveRun, result: InferenceResult) -> None:
        layers = run.layers.shown()
        layers["backdrop"] = run.reference.name
        settings = dataclasses.replace(run.settings, threshold=float(self._threshold.value))
        geometry = geometry_from_layer_metadata(run.reference.metadata)
        self._shown.record(RunRecord(run.name, run.checkpoint.metadata, settings, result, geometry, layers))

    def _on_aborted(self) -> None:
        run = self._active
        if run is not None:
            self._drop_unfinished(run)
            done, total = (run.latest.done, run.latest.total) if run.latest else (0, "?")
            if run.latest:  # the bar is drawn at most every redraw interval: it may lag the last batch
                self._set_progress(run.latest.done, run.latest.total)
            self._status.value = (
                f"{run.name}: cancelled after {done} of {total} patches; the probability so far stays in "
                f"{result_layer_names(run.name)['probability'] + PARTIAL_SUFFIX!r} (no mask)."
            )

    def _drop_unfinished(self, run: _ActiveRun) -> None:
        """Keep only the partial probability of a run that did not finish (step by step, see `_step_layers`)."""
        run.layers.keep_probability_only()
        self._steps.start(run.layers, run.layers_ready.set)

    def _on_error(self, err: Exception) -> None:
        if self._active is not None:
            self._drop_unfinished(self._active)
        self._status.value = "Inference failed (see the notification)."
        notify_or_raise(err, InferenceFailed)

    def _on_worker_finished(self) -> None:
        self._worker = None
        self._active = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._run_button.enabled = not running
        self._cancel_button.enabled = running

    def _apply_threshold(self) -> None:
        """Re-threshold the current run's mask (the latest finished one; kept runs keep their threshold)."""
        self._shown.rethreshold(float(self._threshold.value), self._mask_controls.mask)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
