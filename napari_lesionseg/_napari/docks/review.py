"""The Lesion review dock: compare a prediction with a reference, walk through the lesions, correct.

* Prediction and reference are any two labels layers (a run's mask, the phantom's ground truth, an
  expert's mask, another rater's, the corrected mask); nonzero voxels are lesion. When the prediction
  is the mask layer of an inference run, the run's probability map adds APR, the precision-recall
  curve and each lesion's mean probability.
* The TP/FN/FP overlay uses the colours of the paper's Fig. 8 (`constants.CONFUSION_COLORS`),
  voxel-wise or lesion-wise. The review is recomputed off the GUI thread when the layers, their data
  or the latest run change.
* Clicking a lesion row (or Next/Previous) centres the view on it; Accept/Reject set its voxels in
  the corrected mask layer (undoable with napari's undo); missed lesions are painted with napari's
  own label tools. The corrected mask is autosaved beside the subject (`corrections`) about a
  second after every edit, and an earlier autosave is offered when the subject is opened again.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, RadioButtons
from napari.layers import Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer

from napari_lesionseg._napari._autosave import MaskAutosaver
from napari_lesionseg._napari._corrected_masks import source_path
from napari_lesionseg._napari._correction_panel import CorrectionPanel
from napari_lesionseg._napari._lesion_focus import focus_on
from napari_lesionseg._napari._lesion_table import LesionTable
from napari_lesionseg._napari._notify import notify_or_raise
from napari_lesionseg._napari._orientation import show_radiological
from napari_lesionseg._napari._plot import CurvePlot
from napari_lesionseg._napari._review_inputs import review_arguments
from napari_lesionseg._napari._review_overlay import ReviewOverlay, backdrop
from napari_lesionseg._napari._review_schedule import ReviewSchedule
from napari_lesionseg._napari._row import row
from napari_lesionseg._napari._scroll import scroll_contents
from napari_lesionseg._napari._session import session_for
from napari_lesionseg._napari._table import make_table, split
from napari_lesionseg._napari._wrapped import wrapped
from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.evaluation.review import REVIEW_METRICS, Review, review_masks
from napari_lesionseg.evaluation.review_rows import ReviewRow, false_positives_under, review_rows, row_voxels
from napari_lesionseg.evaluation.tables import format_metric, metric_pairs

if TYPE_CHECKING:
    import napari

__all__ = ["LesionReviewWidget"]

_METRIC_COLUMNS = ("metric", "value", "metric", "value")
_METRIC_ROWS = (len(REVIEW_METRICS) + 1) // 2
_AUTO_UPDATE_MS = 400
#: Default size under which false positives are specks to reject in bulk (mm^3; MSSEG's evaluation ignores
#: lesions under 3 mm^3).
_SPECK_MM3 = 10.0
_TEXT_WIDTH = 300


class LesionReviewWidget(Container):
    """Metrics, PR curve, TP/FN/FP overlay and lesion-by-lesion correction of a prediction."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        show_radiological(viewer)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._review: Review | None = None
        self._reviewed: tuple[Labels, Labels] | None = None
        self._overlay = ReviewOverlay(viewer)
        self._rows: list[ReviewRow] = []
        self._coverage_timer = QTimer(self.native, singleShot=True, interval=_AUTO_UPDATE_MS)
        self._coverage_timer.timeout.connect(self._show_coverage)
        self._closed = threading.Event()
        self._schedule = ReviewSchedule(
            self.native, self._pair, self.update, rest_ms=_AUTO_UPDATE_MS, closed=self._closed
        )
        self._build()
        self._connect()
        self._refresh_choices()
        self._pick_defaults()
        scroll_contents(self)  # fits a laptop screen

    # --- public handles (also used by the headless demo) -------------------------------------------

    @property
    def review(self) -> Review | None:
        """The latest review shown."""
        return self._review

    @property
    def overlay(self) -> Labels | None:
        """The TP/FN/FP labels layer, once a review was shown."""
        return self._overlay.layer

    @property
    def busy(self) -> bool:
        """Whether a review is being computed."""
        return self._schedule.busy

    @property
    def autosaver(self) -> MaskAutosaver:
        """The corrected mask's autosave (its `last_saved`, `flush()`)."""
        return self._correction.autosaver

    def set_prediction(self, layer: Labels) -> None:
        """Review `layer` as the prediction (a run's mask or any labels layer)."""
        self._prediction.value = layer

    def set_reference(self, layer: Labels) -> None:
        """Compare against `layer` (ground truth, an expert's or the corrected mask)."""
        self._reference.value = layer

    def set_mode(self, mode: str) -> None:
        """Colour the overlay ``"voxel"``-wise or ``"lesion"``-wise."""
        self._mode.value = mode

    def update(self, *, blocking: bool = False, quiet: bool = False) -> Any:
        """Recompute the review of the chosen layers; returns the thread worker (None if blocking or refused).

        Args:
            blocking: compute on this thread and show the result before returning (scripts, demo).
            quiet: put problems in the status line only, without a notification (automatic updates).
        """
        self._schedule.stop()
        try:
            inputs = self._review_inputs()
        except LesionSegError as err:
            self._status.value = wrapped(str(err))
            if not quiet:
                show_error(str(err))
            return None
        if blocking:
            try:
                self._show(review_masks(**inputs["arguments"]), inputs["layers"])
            except LesionSegError as err:
                self._report_error(err)
            return None
        if not self._schedule.busy:
            self._status.value = wrapped("Reviewing...")
        layers = inputs["layers"]
        return self._schedule.start(
            inputs["arguments"], lambda review: self._show(review, layers, add_overlay=not quiet),
            self._report_quietly if quiet else self._report_error, quiet=quiet,
        )  # fmt: skip

    def select_lesion(self, index: int) -> None:
        """Select lesion row `index`: the slider at its centre, the view centred and zoomed on it, a ring around it."""
        if not 0 <= index < len(self._rows):
            show_error(f"There is no lesion {index + 1}: the review lists {len(self._rows)}.")
            return
        self._table_of_lesions.select(index)
        row = self._rows[index]
        if self._reviewed:
            focus_on(self._viewer, self._reviewed[0], row)
        volumes = " / ".join(f"{v:.3f}" for v in (row.reference_ml, row.predicted_ml) if v is not None)
        self._status.value = wrapped(f"Lesion {index + 1}/{len(self._rows)}: {row.status}, {volumes} mL")

    def reject_small_false_positives(self, max_mm3: float | None = None) -> int:
        """Remove every false positive under `max_mm3` (default: the dock's field) from the corrected mask."""
        max_mm3 = float(self._speck_mm3.value if max_mm3 is None else max_mm3)
        layer = self._correction.editable_on(self._review)
        if layer is None:
            return 0
        indices = false_positives_under(self._rows, max_mm3 / 1000.0)
        for index in indices:
            layer.data_setitem(row_voxels(self._review, self._rows[index]), 0)
        self._show_coverage()
        self._status.value = wrapped(f"Rejected {len(indices)} false positive(s) under {max_mm3:g} mm³.")
        return len(indices)

    @property
    def rows(self) -> list[ReviewRow]:
        """The lesion table's rows (one per lesion), in review order."""
        return list(self._rows)

    def next_lesion(self) -> None:
        """Select the next lesion row (wrapping around)."""
        self._step_lesion(+1)

    def previous_lesion(self) -> None:
        """Select the previous lesion row (wrapping around)."""
        self._step_lesion(-1)

    @property
    def selected_lesion(self) -> int | None:
        """Index of the selected lesion row, if any."""
        return self._table_of_lesions.selected

    def accept(self, index: int | None = None) -> None:
        """Keep lesion `index` (default: the selected one) in the corrected mask."""
        self._decide(index, keep=True)

    def reject(self, index: int | None = None) -> None:
        """Remove lesion `index` (default: the selected one) from the corrected mask."""
        self._decide(index, keep=False)

    def new_corrected_mask(self) -> Labels | None:
        """Add a corrected mask layer initialised from the prediction, select it and return it."""
        return self._correction.new_from(self._prediction.value)

    def restore_autosave(self) -> Labels | None:
        """Add the subject's autosaved corrected mask as a layer, select it and return it."""
        return self._correction.restore()

    def save_corrected(self, path: str | Path | None = None) -> Path | None:
        """Write the corrected mask to `path` (default: the Save-as field, else the autosave file)."""
        return self._correction.save(path)

    # --- layout ----------------------------------------------------------------------------------

    def _build(self) -> None:
        self._prediction = ComboBox(choices=self._mask_layers, nullable=True)
        self._reference = ComboBox(choices=self._mask_layers, nullable=True)
        self._mode = RadioButtons(
            choices=[("voxel-wise", "voxel"), ("lesion-wise", "lesion")], value="voxel", orientation="horizontal"
        )
        self._update_button = PushButton(text="Update review")
        self._status = Label(value="")
        self._metrics = make_table(_METRIC_COLUMNS, visible_rows=_METRIC_ROWS)
        self._table_of_lesions = LesionTable(visible_rows=6)
        self._lesions = self._table_of_lesions.widget
        self._previous, self._next = PushButton(text="< Previous"), PushButton(text="Next >")
        self._accept, self._reject = PushButton(text="Accept (keep)"), PushButton(text="Reject (remove)")
        self._speck_mm3 = FloatSpinBox(value=_SPECK_MM3, min=0.0, max=10_000.0, step=1.0)
        self._reject_specks = PushButton(text="Reject false positives under (mm³)")
        self._correction = CorrectionPanel(
            self._viewer, excluded=lambda: self._overlay.layer, on_edit=self._coverage_timer.start
        )
        self._correction.connect_new(lambda: self._prediction.value)
        self._status.native.setMinimumWidth(_TEXT_WIDTH)  # its text is wrapped in code (`_wrapped`)
        self._correction.status.native.setMinimumWidth(_TEXT_WIDTH)  # wrapped in code too
        self.extend(
            [
                Label(value="<b>Lesion review</b>"),
                row(Label(value="Prediction"), self._prediction),
                row(Label(value="Reference"), self._reference),
                row(Label(value="Overlay"), self._mode, self._update_button),
                self._status,
                self._metrics,
                self._lesions,
                row(self._previous, self._next, self._accept, self._reject),
                row(self._reject_specks, self._speck_mm3),
                self._correction,
            ]
        )
        self.insert(self.index(self._lesions), self._overlay.ortho)
        self._plot = CurvePlot("Precision-recall", "recall", "precision", x_range=(0.0, 1.0), y_range=(0.0, 1.0))
        self._plot.clear("choose a run's mask as prediction for the curve")
        self.native.layout().insertWidget(self.index(self._metrics) + 1, self._plot)

    def _connect(self) -> None:
        self._prediction.changed.connect(self._schedule.follow)
        self._reference.changed.connect(self._schedule.follow)
        self._mode.changed.connect(self._on_mode_changed)
        self._update_button.changed.connect(lambda: self.update())
        self._lesions.native.itemSelectionChanged.connect(self._on_row_clicked)
        self._previous.changed.connect(self.previous_lesion)
        self._next.changed.connect(self.next_lesion)
        self._accept.changed.connect(lambda: self.accept())
        self._reject.changed.connect(lambda: self.reject())
        self._reject_specks.changed.connect(lambda: self.reject_small_false_positives())
        self._session.threshold_changed.connect(self._schedule.schedule)  # the run's mask was re-thresholded
        self._viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self._viewer.layers.events.removed.connect(self._on_layer_removed)
        self._session.run_finished.connect(self._on_run_finished)
        closed = self._closed  # not `self`: the dock may be half torn down when its widget is destroyed
        self.native.destroyed.connect(lambda *_: closed.set())

    # --- slots -----------------------------------------------------------------------------------

    def _on_mode_changed(self, mode: str) -> None:
        if mode != self._overlay.mode:  # napari resets the dock's choices (re-emitting this) on layer changes
            self._show_overlay()
            self._overlay.draw_planes(self._overlay.ortho.image)

    def _on_row_clicked(self) -> None:
        index = self.selected_lesion
        if index is not None:
            self.select_lesion(index)

    def _on_layer_inserted(self, event: Any) -> None:
        self._refresh_choices()
        path = source_path(event.value)
        if self._reference.value is None and path is not None and path in self._correction.masks.reference_files():
            self._reference.value = event.value
        self._correction.offer_autosave()

    def _on_layer_removed(self, event: Any) -> None:
        self._overlay.forget(event.value)
        self._correction.forget(event.value)
        self._refresh_choices()

    def _on_run_finished(self, run: Any) -> None:
        name = run.layers.get("mask")
        if name in self._viewer.layers and isinstance(self._viewer.layers[name], Labels):
            self._prediction.value = self._viewer.layers[name]
        self._schedule.schedule()

    def _report_error(self, err: Exception) -> None:
        self._status.value = wrapped("Could not review (see the notification).")
        notify_or_raise(err)

    def _report_quietly(self, err: Exception) -> None:
        """An automatic review's problem goes to the status line; Update review shows it as a notification."""
        if not isinstance(err, LesionSegError):
            notify_or_raise(err)
        self._status.value = wrapped(str(err))

    # --- review ----------------------------------------------------------------------------------

    def _pair(self) -> tuple[Labels | None, Labels | None]:
        return self._prediction.value, self._reference.value

    def _review_inputs(self) -> dict[str, Any]:
        prediction, reference = self._prediction.value, self._reference.value
        arguments = review_arguments(prediction, reference, self._session.runs)
        return {"arguments": arguments, "layers": (prediction, reference)}

    def _show(self, review: Review, layers: tuple[Labels, Labels], *, add_overlay: bool = True) -> None:
        if self._closed.is_set():  # a review that finished after the viewer closed
            return
        self._review, self._reviewed = review, layers
        metrics = review.metrics
        self._metrics.value = split(metric_pairs(metrics, REVIEW_METRICS), _METRIC_COLUMNS)
        if review.curve is not None:
            self._plot.set_curve(*review.curve, marker=review.operating_point)
        else:
            self._plot.clear("no run probability for this prediction" if metrics["n_lesions_gt"] else "empty reference")
        self._rows = review_rows(review)
        self._table_of_lesions.show(self._rows)
        self._show_coverage()
        if add_overlay or self._overlay.shown:  # automatic updates never add it unasked
            self._show_overlay()
        self._overlay.draw_planes(backdrop(self._viewer))
        self._status.value = wrapped(
            f"{layers[0].name} vs {layers[1].name}: {metrics['n_lesions_gt']} reference and "
            f"{metrics['n_lesions_pred']} predicted lesions, DSC {format_metric('dsc', metrics['dsc'])}"
        )

    def _show_overlay(self) -> None:
        if self._review is not None and self._reviewed is not None:
            self._overlay.paint(self._review, self._reviewed[0], self._mode.value)

    def _show_coverage(self) -> None:
        corrected = self._correction.layer
        self._table_of_lesions.show_coverage(self._review, self._rows, None if corrected is None else corrected.data)

    # --- navigation and decisions ------------------------------------------------------------------

    def _step_lesion(self, step: int) -> None:
        count = len(self._rows)
        if count == 0:
            show_error("There are no lesions to walk through: update the review first.")
            return
        current = self.selected_lesion
        self.select_lesion(((current if current is not None else -step if step > 0 else 0) + step) % count)

    def _decide(self, index: int | None, *, keep: bool) -> None:
        index = self.selected_lesion if index is None else index
        layer = self._correction.editable_on(self._review)
        if layer is None:
            return
        if index is None or not 0 <= index < len(self._rows):
            show_error("Select a lesion in the table first.")
            return
        layer.data_setitem(row_voxels(self._review, self._rows[index]), 1 if keep else 0)
        self._show_coverage()

    # --- choices ---------------------------------------------------------------------------------

    def _mask_layers(self, widget: Any = None) -> list[tuple[str, Labels]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Labels) and layer is not self._overlay.layer
        ]

    def _refresh_choices(self) -> None:
        for combo in (self._prediction, self._reference, self._correction.layer_choice):
            combo.reset_choices()

    def _pick_defaults(self) -> None:
        layers = dict(self._mask_layers())
        references = [
            layer for layer in layers.values() if source_path(layer) in self._correction.masks.reference_files()
        ]
        if self._reference.value is None and references:
            self._reference.value = references[0]
        run = self._session.latest
        if run is not None and run.layers.get("mask") in layers:
            self._prediction.value = layers[run.layers["mask"]]
        self._correction.offer_autosave()

