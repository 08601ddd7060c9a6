"""The Fine-tune dock: retrain the selected checkpoint on the corrected mask, live, without freezing napari.

Thin by design: the data are the viewer's modality layers and the corrected mask layer (plus optional
subject folders); `training.corrections.iter_fine_tune_on_correction` measures the starting network, trains,
saves a new checkpoint in the per-user folder (never over its parent) and measures the result. The
run goes on in a generator thread worker that yields every step (progress bar, live loss curve) and stops
after the current step on Cancel. When it ends, the Inference dock's selector lists the new
checkpoint at once (`Session.checkpoints_changed`) and one click runs inference with it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton
from napari.layers import Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from napari_lesionseg._napari._finetune_inputs import fine_tune_request, images_text
from napari_lesionseg._napari._finetune_report import finished_text, progress_text
from napari_lesionseg._napari._finetune_settings import FineTuneSettings
from napari_lesionseg._napari._folder_list import FolderList
from napari_lesionseg._napari._layers import is_result
from napari_lesionseg._napari._notify import notify_or_raise
from napari_lesionseg._napari._orientation import show_radiological
from napari_lesionseg._napari._plot import CurvePlot
from napari_lesionseg._napari._row import row
from napari_lesionseg._napari._scroll import scroll_contents
from napari_lesionseg._napari._session import session_for
from napari_lesionseg._napari._status_box import status_box
from napari_lesionseg._napari._subjects import default_for_newest_subject
from napari_lesionseg._napari._table import make_table, split
from napari_lesionseg._progress import CancelToken
from napari_lesionseg.engine.catalog import short_label
from napari_lesionseg.engine.checkpoints import CheckpointInfo, list_checkpoints
from napari_lesionseg.engine.choice import grouped
from napari_lesionseg.errors import CheckpointError, LesionSegError
from napari_lesionseg.evaluation.tables import comparison_rows
from napari_lesionseg.training.correction_checks import CHECK_COLUMNS, checked_rows
from napari_lesionseg.training.corrections import (
    FineTuneOutcome,
    FineTuneRequest,
    iter_fine_tune_on_correction,
)
from napari_lesionseg.vocabulary import LOSS_LABELS

if TYPE_CHECKING:
    import napari

    from napari_lesionseg.training import TrainingProgress

__all__ = ["FineTuneWidget"]

#: Metrics of the before/after table (keys of `training.validation.SUMMARY_KEYS`).
_COMPARED = ("dsc", "sensitivity", "ppv", "f2", "apr", "ltpr", "lfpr", "assd_mm", "hd95_mm")
_TABLE_COLUMNS = ("metric", "before", "after", "change")
_CORRECTED_NAME = "corrected mask"


class FineTuneWidget(Container):
    """Fine-tune a checkpoint on the corrected subject; compare before and after."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        show_radiological(viewer)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._worker: Any = None
        self._cancel: CancelToken | None = None
        self._closed = threading.Event()
        self._outcome: FineTuneOutcome | None = None
        self._losses: list[float] = []
        self._held_out: list[tuple[int, float]] = []
        self._infos: list[CheckpointInfo] = []
        self._settings_from: Path | None = None
        self._follow_run = False
        self._picked = False  # the user chose where to start: keep it (else a run's, else `default_start`)
        self._choosing = False
        self._build()
        self._connect()
        self.refresh_checkpoints()
        self._on_layers_changed()
        scroll_contents(self)  # fits a laptop screen

    # --- public handles (also used by the headless demo) -------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a fine-tune is running."""
        return self._worker is not None

    @property
    def outcome(self) -> FineTuneOutcome | None:
        """How the last fine-tune ended (checkpoint, before/after metrics, losses)."""
        return self._outcome

    @property
    def losses(self) -> list[float]:
        """Training losses of the current (or last) run, one per step."""
        return list(self._losses)

    def configure(
        self,
        *,
        loss: str | None = None,
        beta: float | None = None,
        iterations: int | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        measure: bool | None = None,
    ) -> None:
        """Set the training settings as the user would (None leaves a setting as it is)."""
        self._settings.configure(
            loss=loss, beta=beta, iterations=iterations, lr=lr, batch_size=batch_size, device=device, measure=measure
        )

    def set_checkpoint(self, name_or_path: str | Path) -> None:
        """Start from the checkpoint with this name (file stem) or file."""
        wanted = str(name_or_path)
        found = [info for info in self._infos if wanted in (str(info.path), info.name)]
        if not found:  # saved since the list was read
            self.refresh_checkpoints()
            found = [info for info in self._infos if wanted in (str(info.path), info.name)]
        if not found:
            raise CheckpointError(f"no checkpoint {wanted!r} in the selector: {[info.name for info in self._infos]}")
        self._checkpoint.value = str(found[0].path)
        self._picked = True

    def set_mask(self, layer: Labels) -> None:
        """Train on `layer` as the corrected mask."""
        self._mask.value = layer

    def add_folder(self, folder: str | Path) -> None:
        """Also train on the subject folder(s) under `folder` (each needs a reference mask)."""
        self._folders.add(folder)

    def clear_folders(self) -> None:
        """Train on the viewer's subject only."""
        self._folders.clear()

    def add_check_folder(self, folder: str | Path) -> None:
        """Score the subject folder(s) under `folder` before and after, never training on them (each needs a mask)."""
        self._checks.add(folder)

    def start(self) -> Any:
        """Start fine-tuning off the GUI thread; returns the worker (None, with a notification, on bad input)."""
        if self.busy:
            show_info("A fine-tune is already running: cancel it first.")
            return None
        try:
            request = self._request()
        except LesionSegError as err:
            self._status.value = "Cannot fine-tune (see the notification)."
            show_error(str(err))
            return None
        self._picked = True  # a second Start begins where the first did, not from the checkpoint it made
        self._cancel = token = CancelToken()
        self.native.destroyed.connect(lambda *_: token.cancel())  # closing the dock stops the run
        self._losses, self._held_out = [], []
        self._loss_plot.clear("waiting for the first step")
        self._held_out_plot.clear("scored every few steps")
        self._progress.max, self._progress.value = request.steps, 0
        self._table.value = split([], _TABLE_COLUMNS)
        self._checked.value = split([], CHECK_COLUMNS)
        action = "Measuring" if request.measure else "Loading"
        self._status.value = f"{action} {Path(str(request.checkpoint)).stem} on {request.mask_name!r}..."
        self._set_running(True)
        self._worker = create_worker(
            iter_fine_tune_on_correction,
            request,
            cancel=self._cancel,
            _connect={
                "yielded": self._on_progress,
                "returned": self._on_finished,
                "errored": self._on_error,
                "finished": self._on_worker_done,
            },
        )
        return self._worker

    def cancel(self) -> None:
        """Stop after the current step; nothing is saved."""
        if self._cancel is not None:
            self._cancel.cancel()
            self._status.value = "Cancelling after the current step..."

    def rerun_inference(self) -> Any:
        """Select the fine-tuned checkpoint in the Inference dock (opening it if needed) and run it; returns its worker."""
        from napari_lesionseg._napari.docks.inference import InferenceWidget

        name = self._outcome.name if self._outcome is not None else None
        if name is None:
            show_error("There is no fine-tuned checkpoint yet: run a fine-tune first.")
            return None
        docks = [w for w in self._viewer.window.dock_widgets.values() if isinstance(w, InferenceWidget)]
        dock = docks[0] if docks else self._viewer.window.add_plugin_dock_widget("napari-lesionseg", "Inference")[1]
        if name not in dock.checkpoint_names:
            dock.refresh_checkpoints()
        dock.select_checkpoint(name)
        return dock.run()

    def refresh_checkpoints(self) -> None:
        """Re-read the checkpoints into the selector now (the latest run's checkpoint is preselected)."""
        self._show_checkpoints(list_checkpoints())

    def _refresh_in_background(self, *_: Any) -> None:
        """Re-read the checkpoints off the GUI thread (reading each file's metadata takes a moment)."""
        create_worker(list_checkpoints, _connect={"returned": self._show_checkpoints})

    def _on_run_finished(self, run: Any) -> None:
        """A new run: the next fine-tune starts from its checkpoint (the one whose output gets corrected)."""
        self._follow_run = True
        self._refresh_in_background()

    def _show_checkpoints(self, infos: list[CheckpointInfo]) -> None:
        if self._closed.is_set():  # the worker outlived the dock
            return
        self._infos = grouped(infos)
        previous, self._choosing = self._checkpoint.value, True
        try:
            self._checkpoint.reset_choices()
            paths = [path for _, path in self._checkpoint_choices()]
            run = self._session.latest
            preferred = [p for p in paths if run is not None and Path(p).stem == run.checkpoint.name]
            if preferred and (self._follow_run or previous not in paths):  # start from the run being corrected
                self._checkpoint.value = preferred[0]
            elif previous in paths and (self._picked or run is not None):
                self._checkpoint.value = previous
            else:
                self._offer_default()
        finally:
            self._choosing = False
        self._follow_run = False

    def _offer_default(self) -> None:
        """Before any run and any choice, start from the Inference dock's default for the newest subject."""
        default = None if self._picked or self._session.latest is not None else default_for_newest_subject(self._viewer, self._infos)
        if default is not None and self._checkpoint.value != str(default.path):
            choosing, self._choosing = self._choosing, True
            try:
                self._checkpoint.value = str(default.path)
            finally:
                self._choosing = choosing

    # --- layout and events -------------------------------------------------------------------------

    def _build(self) -> None:
        self._checkpoint = ComboBox(choices=self._checkpoint_choices)
        self._mask = ComboBox(choices=self._mask_choices, nullable=True)
        self._folders = FolderList("Also train on (subject folders with masks)", "none (viewer subject only)")
        self._checks = FolderList("Check on, never trained on (subject folders with masks)", "none")
        self._images_label = Label(value="")
        self._settings = FineTuneSettings()
        self._start = PushButton(text="Start fine-tuning")
        self._stop = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(min=0, max=1, value=0)
        self._status = status_box()
        self._table = make_table(_TABLE_COLUMNS, visible_rows=len(_COMPARED))
        self._checked = make_table(CHECK_COLUMNS, visible_rows=3)
        self._rerun = PushButton(text="Run inference with the fine-tuned model", enabled=False)
        self.extend(
            [
                Label(value="<b>Fine-tune</b>"),
                row(Label(value="Start from"), self._checkpoint),
                row(Label(value="Corrected mask"), self._mask),
                self._images_label,
                self._folders,
                self._checks,
                self._settings,
                self._settings.measure,
                row(self._start, self._stop),
                self._progress,
                self._status,
                Label(value="Before / after, on the corrected mask (trained on: check another subject)"),
                self._table,
                Label(value="Check subjects (never trained on)"),
                self._checked,
                self._rerun,
            ]
        )
        self._loss_plot = CurvePlot("Training loss", "step", "loss")
        self._held_out_plot = CurvePlot("Held-out slab of the corrected mask", "step", "DSC", y_range=(0.0, 1.0))
        for plot in (self._held_out_plot, self._loss_plot):
            plot.clear("no run yet")
            self.native.layout().insertWidget(self.index(self._status) + 1, plot)

    def _connect(self) -> None:
        closed = self._closed  # not `self`: the dock may be half torn down when its widget is destroyed
        self.native.destroyed.connect(lambda *_: closed.set())
        self._start.changed.connect(lambda: self.start())
        self._stop.changed.connect(self.cancel)
        self._rerun.changed.connect(lambda: self.rerun_inference())
        self._checkpoint.changed.connect(self._on_checkpoint_changed)
        self._mask.changed.connect(self._show_images)
        self._session.checkpoints_changed.connect(self._refresh_in_background)
        self._session.run_finished.connect(self._on_run_finished)
        self._viewer.layers.events.inserted.connect(self._on_layers_changed)
        self._viewer.layers.events.removed.connect(self._on_layers_changed)

    # --- slots -------------------------------------------------------------------------------------

    def _on_layers_changed(self, event: Any = None) -> None:
        self._mask.reset_choices()
        if self._mask.value is None:
            self._mask.value = dict(self._mask_choices()).get(_CORRECTED_NAME)
        self._offer_default()
        self._show_images()

    def _on_checkpoint_changed(self, value: Any = None) -> None:
        """Start from the checkpoint's own loss and beta (the user may change them)."""
        self._picked = self._picked or (value is not None and not self._choosing)
        info = self._selected_info()
        if info is not None and info.path != self._settings_from and info.metadata.loss in LOSS_LABELS:
            self._settings_from = info.path  # a refreshed list re-selecting it keeps the user's settings
            self._settings.loss.value = info.metadata.loss
            if info.metadata.beta is not None:
                self._settings.beta.value = info.metadata.beta
        self._show_images()

    def _show_images(self, value: Any = None) -> None:
        """Say which image layers the selected checkpoint would train on (or which modality is missing)."""
        self._images_label.value = images_text(self._viewer, self._selected_info(), self._mask.value)

    def _on_progress(self, step: TrainingProgress) -> None:
        if self._closed.is_set():  # the worker outlived the dock
            return
        if step.phase == "train":
            self._losses.append(float(step.loss))
            self._progress.value = step.step
            self._loss_plot.set_curve(np.arange(1, len(self._losses) + 1), self._losses)
        elif step.phase == "held_out" and step.metrics:
            self._held_out.append((step.step, float(step.metrics["dsc"])))
            best = (float(step.metrics["best_step"]), float(step.metrics["best_dsc"]))
            self._held_out_plot.set_curve(*zip(*self._held_out), marker=best)
        text = progress_text(step)
        if text is not None:
            last = f"; held-out DSC {self._held_out[-1][1]:.3f}" if step.phase == "train" and self._held_out else ""
            self._status.value = text + last

    def _on_finished(self, outcome: FineTuneOutcome) -> None:
        if self._closed.is_set():  # the worker outlived the dock
            return
        self._outcome = outcome
        self._table.value = split(comparison_rows(outcome.before, outcome.after, _COMPARED), _TABLE_COLUMNS)
        self._checked.value = split(checked_rows(outcome.checked_before, outcome.checked_after), CHECK_COLUMNS)
        self._status.value = finished_text(outcome)
        if not outcome.cancelled:  # stopped early or at the time limit is a finished run, not one stuck part-way
            self._progress.value = self._progress.max
        if outcome.checkpoint is None:
            return
        self._session.checkpoints_changed.emit()  # this dock and the Inference dock re-read the list
        self._rerun.enabled = True
        show_info(f"Fine-tuned checkpoint {outcome.name!r} saved; the Inference dock lists it.")

    def _on_error(self, err: Exception) -> None:
        self._status.value = "The fine-tune stopped (see the notification)."
        notify_or_raise(err)

    def _on_worker_done(self) -> None:
        self._worker = None
        if not self._closed.is_set():
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._start.enabled = not running
        self._stop.enabled = running

    # --- the request -------------------------------------------------------------------------------

    def _request(self) -> FineTuneRequest:
        """The fine-tune the dock describes, checked (raises a `LesionSegError` naming the problem)."""
        return fine_tune_request(
            self._viewer,
            self._selected_info(),
            self._mask.value,
            self._settings,
            folders=self._folders.folders,
            check_folders=self._checks.folders,
        )

    def _selected_info(self) -> CheckpointInfo | None:
        return next((info for info in self._infos if str(info.path) == self._checkpoint.value), None)

    def _checkpoint_choices(self, widget: Any = None) -> list[tuple[str, str]]:
        return [(short_label(info), str(info.path)) for info in self._infos]

    def _mask_choices(self, widget: Any = None) -> list[tuple[str, Labels]]:
        return [
            (layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels) and not is_result(layer)
        ]

