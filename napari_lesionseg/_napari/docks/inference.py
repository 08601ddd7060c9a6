"""The Inference dock: choose a checkpoint (its beta) and the input layers, segment, watch it fill in.

Thin by design: the run is `engine.predict.iter_predict` (the one prediction entry point) in a generator thread worker that yields every
`ProgressEvent`; the dock pastes each event's partial probability into the probability layer at its
box, outlines the batch's patches and moves the progress bar, so the viewer never freezes. Cancel
sets the run's `CancelToken` and quits the worker (the run stops within one batch). Every fusion
mode the Fusion explorer compares is fused in the same run, and each finished run is recorded in
the viewer's `Session` for the other docks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer

from napari_lesionseg._napari._layers import is_result, remove_layers
from napari_lesionseg._napari._run_layers import (
    MASK_COLOR,
    PROBABILITY_COLORMAP,
    UNCERTAINTY_COLORMAP,
    RunLayers,
)
from napari_lesionseg._napari._session import RunRecord, session_for
from napari_lesionseg._napari.metadata import (
    geometry_from_layer_metadata,
    modality_from_layer_metadata,
)
from napari_lesionseg._napari.reader import subject_layer_data
from napari_lesionseg._progress import CancelToken
from napari_lesionseg.constants import OVERLAP, THRESHOLD
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import (
    CheckpointInfo,
    CheckpointMetadata,
    list_checkpoints,
    user_checkpoint_dir,
)
from napari_lesionseg.engine.devices import resolve_device
from napari_lesionseg.engine.predict import iter_predict
from napari_lesionseg.engine.results import InferenceResult, ProgressEvent
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import CheckpointError, InvalidInputError, LesionSegError
from napari_lesionseg.evaluation.compare import COMPARED_MODES
from napari_lesionseg.vocabulary import FUSION_MODES

if TYPE_CHECKING:
    from collections.abc import Generator

    import napari

__all__ = ["MASK_COLOR", "PROBABILITY_COLORMAP", "UNCERTAINTY_COLORMAP", "InferenceWidget", "result_layer_names"]

#: Shortest time between two redraws of a running inference (seconds), for a network on the CPU and
#: on an accelerator. Every batch is pasted into the layers at once; the view shows them at most
#: this often. On the CPU the repaints take cores from the network: with software OpenGL on two
#: cores one repaint of the window costs about 0.1 s, and redrawing after every batch made a run
#: 1.4 times slower than the engine alone (1.2 times at one redraw per second).
REDRAW_INTERVAL_S = {"cpu": 1.0, "accelerator": 0.25}
#: Pause between adding two of a run's layers (ms), so that the viewer repaints and takes input in between.
_LAYER_STEP_MS = 30
#: Longest the network waits for the run's layers to be added before it starts anyway (seconds).
_LAYERS_WAIT_S = 5.0
#: Minimum width (pixels) of the wrapped text lines, so they do not collapse into a narrow column.
_TEXT_WIDTH = 300


def result_layer_names(run: str) -> dict[str, str]:
    """Names of a run's layers by role, e.g. ``"lesion probability [beta 1.5]"``."""
    return {
        "probability": f"lesion probability [{run}]",
        "mask": f"lesion mask [{run}]",
        "uncertainty": f"uncertainty [{run}]",
        "patches": f"current patch [{run}]",
    }


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
    redraw_pending: bool = False
    last_redraw: float = -math.inf

    @property
    def redraw_interval_s(self) -> float:
        on_cpu = resolve_device(self.settings.device).type == "cpu"
        return REDRAW_INTERVAL_S["cpu" if on_cpu else "accelerator"]


class InferenceWidget(Container):
    """Segment the loaded modalities with a checkpoint, live, and show the results as layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._worker: Any = None
        self._active: _ActiveRun | None = None
        self._stepping: set[_ActiveRun] = set()  # runs whose layers are being added or removed
        self._checkpoints: dict[str, CheckpointInfo] = {}
        self._runs: dict[str, RunRecord] = {}  # finished runs
        self._shown_runs: set[str] = set()  # runs whose layers this dock added, finished or not

        self._checkpoint = RadioButtons(choices=self._checkpoint_choices)
        self._checkpoint_details = Label(value="")
        self._inputs = Container(labels=True)
        self._folder = FileEdit(mode="d", label="Subject folder")
        self._open_folder = PushButton(text="Open folder as inputs")
        self._fusion = ComboBox(label="Fusion", choices=list(FUSION_MODES), value="spline")
        self._overlap = FloatSpinBox(label="Overlap", min=0.0, max=0.9, step=0.05, value=OVERLAP)
        self._tta = CheckBox(text="Test-time augmentation (4 flips)", value=True)
        self._device = ComboBox(label="Device", choices=_device_choices())
        self._batch = SpinBox(label="Patches per batch", min=1, max=64, value=2)
        self._run_name = LineEdit(label="Run name")
        self._keep = CheckBox(text="Keep earlier runs (compare betas side by side)", value=False)
        self._run_button = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(min=0, max=1, value=0, label="Progress")
        self._status = Label(value="")
        self._threshold = FloatSlider(label="Threshold", min=0.0, max=1.0, step=0.01, value=THRESHOLD)

        self._run_name.native.setPlaceholderText("automatic, e.g. beta 1.5")
        for label in (self._checkpoint_details, self._status):
            label.native.setWordWrap(True)
            label.native.setMinimumWidth(_TEXT_WIDTH)
        self._build_layout()
        self._connect_events()
        self.refresh_checkpoints()

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
            checkpoint = self._selected_checkpoint()
            layers = self._input_layers(checkpoint.metadata)
            settings = self._settings(checkpoint.metadata, layers[0])
        except LesionSegError as err:
            self._status.value = "Cannot run (see the notification)."
            show_error(str(err))
            return None
        self._active = self._start_run(checkpoint, settings, layers[0])
        self._set_running(True)
        self._worker = create_worker(
            _inference_job,
            dict(zip(checkpoint.metadata.modalities, (layer.data for layer in layers))),
            checkpoint.path,
            settings,
            self._active.cancel,
            self._active.layers_ready,
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
            _pause_after(self._worker, pause_after)
        self._worker.start()
        self._start_layer_steps(self._active)
        return self._worker

    def cancel(self) -> None:
        """Stop the running inference before its next batch (the probability so far stays shown)."""
        if self._active is not None:
            self._active.cancel.cancel()
        if self._worker is not None:
            self._worker.quit()

    def open_folder(self, folder: str | Path) -> Any:
        """Load a subject folder off the GUI thread and add its modalities as input layers; returns the worker."""
        self._status.value = f"Loading {Path(folder).name}..."
        return create_worker(
            load_subject,
            Path(folder),
            _connect={"returned": self._add_subject, "errored": self._on_load_error},
        )

    def refresh_checkpoints(self) -> None:
        """Re-read the user's and the bundled checkpoints into the selector (keeps the selection)."""
        with _warnings_as_notifications():
            infos = list_checkpoints()
        self._checkpoints = {str(info.path): info for info in infos}
        previous = self._checkpoint.value
        if tuple(self._checkpoints) != self._checkpoint.choices:  # rebuilding the buttons makes the dock flicker
            self._checkpoint.reset_choices()
        if infos:
            self._checkpoint.value = previous if previous in self._checkpoints else str(infos[0].path)
        self._on_checkpoint_changed()

    def select_checkpoint(self, name: str) -> None:
        """Select the checkpoint called `name` (file stem), as one click on it would."""
        matches = [path for path, info in self._checkpoints.items() if info.name == name]
        if not matches:
            raise CheckpointError(f"no checkpoint named {name!r} in the selector; found {self.checkpoint_names}")
        self._checkpoint.value = matches[0]

    def set_threshold(self, value: float) -> None:
        """Move the threshold slider: every shown mask is recomputed from its probability at once."""
        self._threshold.value = value

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
    ) -> None:
        """Set the dock's run options as a user would (None leaves an option as it is); for scripts and demos.

        Args:
            fusion: primary fusion mode (`constants.FUSION_MODES`).
            overlap: patch overlap fraction.
            tta: the paper's test-time augmentation on or off.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"`` (as listed).
            batch_size: patches per network call.
            run_name: names the run's layers; ``""`` for the automatic ``"beta 1.5"``.
            keep_runs: keep earlier runs' layers (side-by-side betas).
        """
        options = (
            (self._fusion, fusion),
            (self._overlap, overlap),
            (self._tta, tta),
            (self._device, device),
            (self._batch, batch_size),
            (self._run_name, run_name),
            (self._keep, keep_runs),
        )
        for widget, value in options:
            if value is not None:
                widget.value = value

    def reset_choices(self, *_: Any) -> None:
        """Refresh the input layer choices (napari calls this on layer changes; checkpoints refresh apart)."""
        self._refresh_inputs()

    @property
    def checkpoint_names(self) -> list[str]:
        """Names of the checkpoints the selector lists, in order."""
        return [info.name for info in self._checkpoints.values()]

    @property
    def busy(self) -> bool:
        """Whether an inference is running, or its layers are still being added or removed."""
        return self._worker is not None or bool(self._stepping)

    @property
    def progress(self) -> tuple[int, int]:
        """``(patches done, patches in the grid)`` as the progress bar shows them (drawn, not just received)."""
        return int(self._progress.value), int(self._progress.max)

    @property
    def runs(self) -> dict[str, RunRecord]:
        """The finished runs whose layers this dock shows, by run name."""
        return dict(self._runs)

    # --- layout and events --------------------------------------------------------------------

    def _build_layout(self) -> None:
        options = Container(
            labels=True,
            widgets=[self._fusion, self._overlap, self._device, self._batch, self._run_name],
        )
        buttons = Container(layout="horizontal", labels=False, widgets=[self._run_button, self._cancel_button])
        results = Container(labels=True, widgets=[self._threshold])
        self.extend(
            [
                Label(value="<b>Checkpoint</b> (beta: higher favours recall)"),
                self._checkpoint,
                self._checkpoint_details,
                Label(value="<b>Inputs</b> (image layer per modality)"),
                self._inputs,
                Container(labels=True, widgets=[self._folder]),
                self._open_folder,
                Label(value="<b>Options</b>"),
                options,
                self._tta,
                self._keep,
                buttons,
                self._progress,
                self._status,
                Label(value="<b>Result</b>"),
                results,
            ]
        )

    def _connect_events(self) -> None:
        self._checkpoint.changed.connect(self._on_checkpoint_changed)
        self._open_folder.changed.connect(self._on_open_folder)
        self._run_button.changed.connect(lambda: self.run())
        self._cancel_button.changed.connect(self.cancel)
        self._threshold.changed.connect(self._on_threshold)
        self._session.checkpoints_changed.connect(self.refresh_checkpoints)
        for event in (self._viewer.layers.events.inserted, self._viewer.layers.events.removed):
            event.connect(self._refresh_inputs)

    # --- checkpoint and inputs ----------------------------------------------------------------

    def _checkpoint_choices(self, widget: Any = None) -> list[tuple[str, str]]:
        labels = _checkpoint_labels(list(self._checkpoints.values()))
        return [(labels[path], path) for path in self._checkpoints]

    def _selected_checkpoint(self) -> CheckpointInfo:
        info = self._checkpoints.get(self._checkpoint.value)
        if info is None:
            raise CheckpointError(
                f"No checkpoint is selected, and none may exist: put one in {user_checkpoint_dir()} "
                "(`lesionseg train`, or the Fine-tune dock) and it will be listed here."
            )
        return info

    def _on_checkpoint_changed(self, value: Any = None) -> None:
        info = self._checkpoints.get(self._checkpoint.value)
        if info is None:
            self._checkpoint_details.value = f"No checkpoints found (user folder: {user_checkpoint_dir()})."
            self._inputs.clear()
            return
        self._checkpoint_details.value = _checkpoint_details(info)
        chosen = {combo.label: combo.value for combo in self._inputs}  # the user's picks survive a beta switch
        available = self._image_layers()
        self._inputs.clear()
        for modality in info.metadata.modalities:
            combo = ComboBox(label=modality, choices=self._image_choices, nullable=True, name=f"input_{modality}")
            previous = chosen.get(modality)
            combo.value = previous if any(previous is layer for layer in available) else self._matching_layer(modality)
            self._inputs.append(combo)

    def _refresh_inputs(self, event: Any = None) -> None:
        for combo in self._inputs:
            combo.reset_choices()
            if combo.value is None:
                combo.value = self._matching_layer(combo.label)

    def _image_choices(self, widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in self._image_layers()]

    def _image_layers(self) -> list[Image]:
        """Image layers that can be inputs (not the results this plugin computed)."""
        return [layer for layer in self._viewer.layers if isinstance(layer, Image) and not is_result(layer)]

    def _matching_layer(self, modality: str) -> Image | None:
        """The image layer named `modality` (or loaded as it), compared case-insensitively."""
        key = modality.casefold()
        for layer in self._image_layers():
            loaded_as = modality_from_layer_metadata(layer.metadata) or ""
            if key in (layer.name.casefold(), loaded_as.casefold()):
                return layer
        return None

    def _input_layers(self, metadata: CheckpointMetadata) -> list[Image]:
        """The chosen layer of each of the checkpoint's modalities, in its channel order, checked."""
        if not self._image_layers():
            raise InvalidInputError(
                "There are no image layers to segment: open a subject first (Subject dock, File > Open, "
                "or 'Open folder as inputs' here)."
            )
        chosen = {combo.label: combo.value for combo in self._inputs}
        missing = [modality for modality in metadata.modalities if chosen.get(modality) is None]
        if missing:
            raise CheckpointError(
                f"Checkpoint {metadata.name!r} needs the modalities {', '.join(metadata.modalities)}, but no image "
                f"layer is chosen for {', '.join(missing)} (image layers: "
                f"{', '.join(layer.name for layer in self._image_layers())}). Open the missing modality and pick "
                "its layer under Inputs, or choose a checkpoint trained on the modalities you have."
            )
        layers = [chosen[modality] for modality in metadata.modalities]
        _check_layers(dict(zip(metadata.modalities, layers)))
        return layers

    def _settings(self, metadata: CheckpointMetadata, reference: Layer) -> InferenceSettings:
        primary = self._fusion.value
        return InferenceSettings(
            patch_size=tuple(int(p) for p in metadata.patch_size),
            overlap=float(self._overlap.value),
            fusion=(primary, *(mode for mode in COMPARED_MODES if mode != primary)),
            tta="paper" if self._tta.value else "none",
            batch_size=int(self._batch.value),
            device=self._device.value,
            threshold=float(self._threshold.value),
            priority_slice=self._displayed_slice(reference),
        )

    def _displayed_slice(self, reference: Layer) -> int:
        """The index, in `reference`'s voxels, of the slice the slider shows (the patches to do first)."""
        position = reference.world_to_data(self._viewer.dims.point)[0]
        return int(np.clip(np.floor(position + 0.5), 0, reference.data.shape[0] - 1))

    # --- the run ------------------------------------------------------------------------------

    def _start_run(self, checkpoint: CheckpointInfo, settings: InferenceSettings, reference: Layer) -> _ActiveRun:
        """The run's result arrays; its layers (and the removal of stale ones) follow a step per pass."""
        name = self._run_name.value.strip() or _auto_run_name(checkpoint, list(self._checkpoints.values()))
        stale = [] if self._keep.value else [run for run in self._shown_runs if run != name]
        for old in stale:
            self._runs.pop(old, None)
            self._shown_runs.discard(old)
        self._runs.pop(name, None)
        self._shown_runs.add(name)
        stale_layers = [layer for old in stale for layer in result_layer_names(old).values()]
        layers = RunLayers(self._viewer, result_layer_names(name), reference, stale=stale_layers)
        self._status.value = f"{name}: loading the checkpoint and normalising the images..."
        self._set_progress(0, 1)
        return _ActiveRun(name, checkpoint, settings, reference, layers)

    def _start_layer_steps(self, run: _ActiveRun) -> None:
        """Take the run's layer steps one per event-loop pass, from the next pass on (once per run)."""
        if run not in self._stepping:
            self._stepping.add(run)
            QTimer.singleShot(0, lambda: self._step_layers(run))

    def _step_layers(self, run: _ActiveRun) -> None:
        """Take the run's next layer step, then come back after the event loop has run (repaints, input).

        The network waits until the last layer is in (`_ActiveRun.layers_ready`): adding a layer
        while it runs takes napari twice as long on a 2-core machine.
        """
        more = False
        try:
            more = self._without_repaint(run.layers.next_step)
        finally:
            if more:
                QTimer.singleShot(_LAYER_STEP_MS, lambda: self._step_layers(run))
            else:
                self._stepping.discard(run)
                run.layers_ready.set()

    def _without_repaint(self, change: Callable[[], Any]) -> Any:
        """Make a slow change to the layer list with the window's repaint held back to the next pass.

        Adding or removing a layer and the repaint that follows each take up to about 0.3 s with
        software OpenGL on two cores; done in one pass they would stall the viewer twice as long.
        """
        window = self.native.window()
        window.setUpdatesEnabled(False)
        try:
            return change()
        finally:
            QTimer.singleShot(0, lambda: window.setUpdatesEnabled(True))

    def _on_progress(self, event: ProgressEvent) -> None:
        """Paste the batch's fused probability (and mask) at once; redraw once per event-loop pass."""
        run = self._active
        if run is None:
            return
        if event.partial is not None:
            where = _box_slices(event.box)
            run.layers.probability_data[where] = event.partial
            run.layers.mask_data[where] = event.partial >= self._threshold.value
        run.latest = event
        if event.message:
            show_warning(event.message)
        if not run.redraw_pending:  # batches that arrive within one redraw interval are drawn together
            run.redraw_pending = True
            wait_s = run.last_redraw + run.redraw_interval_s - time.perf_counter()
            QTimer.singleShot(round(1000 * max(0.0, wait_s)), self._show_progress)

    def _show_progress(self) -> None:
        run = self._active
        if run is None or run.latest is None:
            return
        run.redraw_pending = False
        run.last_redraw = time.perf_counter()
        event = run.latest
        run.layers.refresh()
        run.layers.set_boxes(event.patch_boxes)
        self._set_progress(event.done, event.total)
        self._status.value = f"{run.name}: {event.done} / {event.total} patches"

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
        self._start_layer_steps(run)
        layers.probability_data[...] = result.probability
        layers.mask_data[...] = result.probability >= self._threshold.value
        if result.uncertainty is not None:
            layers.uncertainty_data[...] = result.uncertainty
        else:
            layers.remove_uncertainty()
        layers.refresh()
        self._set_progress(result.done, result.total)
        self._record(run, result)
        self._status.value = (
            f"{run.name}: {result.total} patches in {result.timings['total']:.1f} s on {result.device}"
            + (f" ({'; '.join(result.messages)})" if result.messages else "")
        )

    def _record(self, run: _ActiveRun, result: InferenceResult) -> None:
        layers = run.layers.shown()
        layers["backdrop"] = run.reference.name
        settings = dataclasses.replace(run.settings, threshold=float(self._threshold.value))
        geometry = geometry_from_layer_metadata(run.reference.metadata)
        record = RunRecord(run.name, run.checkpoint.metadata, settings, result, geometry, layers)
        self._runs[run.name] = record
        self._session.record(record)

    def _on_aborted(self) -> None:
        run = self._active
        if run is not None:
            self._drop_unfinished(run)
            done, total = (run.latest.done, run.latest.total) if run.latest else (0, "?")
            self._status.value = (
                f"{run.name}: cancelled after {done} of {total} patches; the probability so far stays in "
                f"{result_layer_names(run.name)['probability']!r} (no mask)."
            )

    def _drop_unfinished(self, run: _ActiveRun) -> None:
        """Keep only the partial probability of a run that did not finish (step by step, see `_step_layers`)."""
        run.layers.keep_probability_only()
        self._start_layer_steps(run)

    def _on_error(self, err: Exception) -> None:
        if self._active is not None:
            self._drop_unfinished(self._active)
        self._status.value = "Inference failed (see the notification)."
        if isinstance(err, (LesionSegError, _InferenceFailed)):
            show_error(str(err))
        else:  # a bug, not bad input: keep the traceback in napari's console/log
            raise err

    def _on_worker_finished(self) -> None:
        self._worker = None
        self._active = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._run_button.enabled = not running
        self._cancel_button.enabled = running

    def _forget_runs(self, names: Sequence[str]) -> None:
        """Remove the layers of the runs `names`."""
        for name in names:
            remove_layers(self._viewer, list(result_layer_names(name).values()))
            self._runs.pop(name, None)
            self._shown_runs.discard(name)

    def _on_threshold(self, value: float) -> None:
        for record in self._runs.values():
            mask_name = record.layers.get("mask")
            if mask_name in self._viewer.layers:
                mask = self._viewer.layers[mask_name]
                mask.data[...] = record.result.probability >= value
                mask.refresh()
            record.settings = dataclasses.replace(record.settings, threshold=float(value))

    # --- subject folder -----------------------------------------------------------------------

    def _on_open_folder(self) -> None:
        folder = Path(self._folder.value)
        if not folder.is_dir():
            show_error(f"{folder} is not a folder: choose a subject folder holding <sub>_FLAIR.nii.gz etc.")
            return
        self.open_folder(folder)

    def _add_subject(self, subject: Any) -> None:
        for data, kwargs, layer_type in subject_layer_data(subject):
            self._viewer.add_layer(Layer.create(data, kwargs, layer_type))
        self._refresh_inputs()
        self._status.value = f"{subject.name}: {', '.join(subject.modalities)} loaded as inputs."

    def _on_load_error(self, err: Exception) -> None:
        self._status.value = "Could not open the subject (see the notification)."
        if isinstance(err, LesionSegError):
            show_error(str(err))
        else:
            raise err


class _InferenceFailed(Exception):
    """A runtime failure inside the network run (e.g. a device error), reported to the user."""


def _inference_job(
    images: dict[str, np.ndarray],
    checkpoint: Path,
    settings: InferenceSettings,
    cancel: CancelToken,
    layers_ready: threading.Event,
) -> Generator[ProgressEvent, None, InferenceResult]:
    """Worker body: the one prediction entry point, yielding every event.

    The network starts once `layers_ready` is set, after `_LAYERS_WAIT_S` at the latest (or the run
    is cancelled: the engine then stops before its first batch).
    """

    def wait_for_layers() -> None:
        deadline = time.monotonic() + _LAYERS_WAIT_S  # the layers only show the run: never wait on them for long
        while not layers_ready.wait(0.05) and not cancel.is_set() and time.monotonic() < deadline:
            pass

    try:
        return (yield from iter_predict(images, checkpoint, settings, cancel=cancel, before_network=wait_for_layers))
    except RuntimeError as err:  # superqt drops a worker's RuntimeError silently: make it reach the user
        raise _InferenceFailed(f"inference failed on device {settings.device!r}: {err}") from err


def _pause_after(worker: Any, batches: int) -> None:
    """Pause `worker` right after its `batches`-th event, before it starts the next batch.

    The slot runs in the worker's thread (direct connection): a request sent from the GUI thread
    could arrive after a fast run has already finished.
    """
    count = itertools.count(1)

    def pause_when_due(event: ProgressEvent) -> None:
        if next(count) == batches:
            worker.pause()

    worker.yielded.connect(pause_when_due, Qt.ConnectionType.DirectConnection)


def _check_layers(chosen: dict[str, Layer]) -> None:
    """Raise `InvalidInputError` unless the chosen layers are distinct 3-D volumes of one shape."""
    for modality, layer in chosen.items():
        if layer.ndim != 3 or getattr(layer, "rgb", False) or layer.multiscale:
            raise InvalidInputError(
                f"Layer {layer.name!r} (for {modality}) has shape {tuple(layer.data.shape)}: inference needs a "
                "single-channel 3-D volume (Z, Y, X)."
            )
    seen: dict[int, str] = {}
    for modality, layer in chosen.items():
        if id(layer) in seen:
            raise InvalidInputError(
                f"Layer {layer.name!r} is chosen for both {seen[id(layer)]} and {modality}: pick one layer per "
                "modality."
            )
        seen[id(layer)] = modality
    (first_modality, first), *others = chosen.items()
    for modality, layer in others:
        if layer.data.shape != first.data.shape:
            raise InvalidInputError(
                f"Layer {layer.name!r} ({modality}) has shape {tuple(layer.data.shape)} but {first.name!r} "
                f"({first_modality}) has {tuple(first.data.shape)}: all input layers must lie on one voxel grid. "
                "Resample it onto the FLAIR grid (`load_subject(..., resample=True)`) or pick another layer."
            )


def _box_slices(box: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(start), int(stop)) for start, stop in zip(box[0], box[1]))


def _auto_run_name(info: CheckpointInfo, infos: Sequence[CheckpointInfo]) -> str:
    """``"beta 1.5"``, or the checkpoint's name when its beta does not tell it apart from the others."""
    beta = info.metadata.beta
    if beta is None:
        return info.name
    same_beta = [other for other in infos if other.metadata.beta == beta]
    return f"beta {beta:g}" if len(same_beta) == 1 else f"{info.name}, beta {beta:g}"


def _checkpoint_labels(infos: Sequence[CheckpointInfo]) -> dict[str, str]:
    """One selector line per checkpoint: its beta first (the one-click choice), then loss, name, source."""
    labels = {}
    for info in infos:
        beta = "no beta" if info.metadata.beta is None else f"β = {info.metadata.beta:g}"
        source = "yours" if info.source == "user" else "bundled"
        labels[str(info.path)] = f"{beta}  ·  {info.metadata.loss}  ·  {info.name} ({source})"
    return labels


def _checkpoint_details(info: CheckpointInfo) -> str:
    """The selected checkpoint's training data, validation score and inputs, in one short paragraph."""
    metadata = info.metadata
    parts = [f"Loss {metadata.loss}" + ("" if metadata.beta is None else f" (β = {metadata.beta:g})")]
    parts.append(f"trained on {_training_summary(metadata.training)}")
    dsc = _validation_dsc(metadata.validation)
    if dsc is not None:
        parts.append(f"validation DSC {dsc:.3f}")
    if metadata.parent:
        parts.append(f"fine-tuned from {metadata.parent}")
    parts.append(f"inputs {', '.join(metadata.modalities)}; patch {'×'.join(map(str, metadata.patch_size))}")
    return "; ".join(parts) + "."


def _validation_dsc(validation: dict[str, Any]) -> float | None:
    """The validation DSC, stored flat (``{"dsc": ...}``) or as the mean over subjects (``{"mean": {"dsc": ...}}``)."""
    for scores in (validation, validation.get("mean")):
        if isinstance(scores, dict) and isinstance(scores.get("dsc"), (int, float)):
            return float(scores["dsc"])
    return None


def _training_summary(training: dict[str, Any]) -> str:
    data = training.get("data") or training.get("subjects") or []
    if isinstance(data, (list, tuple)) and data:
        names = [Path(str(item)).name for item in data]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        summary = f"{len(names)} folder(s) ({shown})"
    else:
        summary = "unrecorded data"
    steps = training.get("steps") or training.get("epochs")
    if steps:
        summary += f", {steps} {'steps' if 'steps' in training else 'epochs'}"
    return summary


def _device_choices() -> list[tuple[str, str]]:
    """Device choices, naming the GPU when there is one."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    choices = [(f"auto ({gpu or ('Apple GPU' if mps else 'CPU')})", "auto"), ("CPU", "cpu")]
    if gpu:
        choices.append((f"GPU: {gpu}", "cuda"))
    if mps:
        choices.append(("GPU: Apple MPS", "mps"))
    return choices


@contextlib.contextmanager
def _warnings_as_notifications() -> Iterator[None]:
    """Warnings raised inside (e.g. an unreadable checkpoint skipped) become napari notifications."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        show_warning(str(warning.message))
