"""The Fusion explorer dock: the patch grid, the fusion weights, and tiling vs uniform vs spline side by side.

Thin by design: every number comes from the engine (`fusion.weight_kernel`, `compare`), and the
comparison re-uses the fused probabilities the Inference dock's run already holds for every mode
(no second network run). The comparison is napari's grid mode, one view per mode plus a view of
where the modes disagree, all on the same slice and camera; "Back to single view" undoes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, Table
from napari.layers import Labels, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QStyledItemDelegate

from napari_lesionseg._napari._compare_cells import CompareCells
from napari_lesionseg._napari._layers import (
    ROLE_KEY,
    BoxOverlay,
    is_result,
    placement,
    remove_layers,
    show_layer,
)
from napari_lesionseg._napari._notify import notify_or_raise
from napari_lesionseg._napari._orientation import show_radiological
from napari_lesionseg._napari._scroll import scroll_contents
from napari_lesionseg._napari._session import RunRecord, session_for
from napari_lesionseg._napari._status_box import status_box
from napari_lesionseg._napari.metadata import METADATA_KEY
from napari_lesionseg.engine.fusion import weight_kernel
from napari_lesionseg.evaluation.compare import (
    COMPARED_MODES,
    central_patch,
    disagreement,
    mask_disagreement,
    mode_metrics,
    weight_sum,
)
from napari_lesionseg.evaluation.tables import mode_table
from napari_lesionseg.vocabulary import FUSION_MODES

if TYPE_CHECKING:
    import napari

__all__ = ["FusionExplorerWidget"]

GRID_COLOR = "#7fdbff"
WEIGHT_COLORMAP = "viridis"
KERNEL_COLORMAP = "plasma"
#: Roles of the heatmap layers (`show_weights`), which the end of a comparison leaves hidden.
_HEATMAP_ROLES = ("weight kernel", "weight sum")
#: Metrics of the per-mode table (labels and formats from `vocabulary`).
_METRIC_KEYS = ("dsc", "sensitivity", "ppv", "apr", "ltpr", "lfpr", "hd95_mm")
_TEXT_WIDTH = 300
#: Pixels: the table shows all its metric rows without scrolling.
_TABLE_HEIGHT = 250


class FusionExplorerWidget(Container):
    """Look at how a run's patches were fused, and compare the fusion modes without re-running."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        show_radiological(viewer)
        self._viewer = viewer
        self._session = session_for(viewer)
        self._worker: Any = None
        self._grid_overlay: BoxOverlay | None = None
        self._comparison: list[Layer] = []
        self._hidden_by_comparison: list[Layer] = []
        self._grid_before: tuple[bool, int] | None = None
        self.metrics: dict[str, dict[str, Any]] = {}

        self._run = ComboBox(label="Run", choices=self._run_choices)
        self._grid_button = PushButton(text="Show patch grid")
        self._mode = ComboBox(label="Weights of", choices=list(FUSION_MODES), value="spline")
        self._weights_button = PushButton(text="Show fusion weights (kernel + sum)")
        self._reference = ComboBox(label="Reference mask", choices=self._reference_choices, nullable=True)
        self._compare_button = PushButton(text="Compare tiling / uniform / spline")
        self._single_button = PushButton(text="Back to single view", enabled=False)
        self._table = Table(value=mode_table({}, _METRIC_KEYS))
        self._table.read_only = True
        # magicgui's own delegate shows 0.05 as 5.000e-02
        self._table.native.setItemDelegate(QStyledItemDelegate(self._table.native))
        self._table.native.setMinimumHeight(_TABLE_HEIGHT)
        self._status = status_box(min_width=_TEXT_WIDTH)

        self.extend(
            [
                Label(value="<b>Fusion explorer</b>"),
                Container(labels=True, widgets=[self._run]),
                self._grid_button,
                Container(labels=True, widgets=[self._mode]),
                self._weights_button,
                Container(labels=True, widgets=[self._reference]),
                self._compare_button,
                self._single_button,
                Label(value="Metrics per fusion mode (needs a reference mask)"),
                self._table,
                self._status,
            ]
        )
        self._grid_button.changed.connect(lambda: self.show_grid())
        self._weights_button.changed.connect(lambda: self.show_weights())
        self._compare_button.changed.connect(lambda: self.compare())
        self._single_button.changed.connect(self.end_compare)
        self._session.run_finished.connect(self._on_run_finished)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self._set_default_reference()
        if self._session.latest is not None:
            self._run.value = self._session.latest.name
        scroll_contents(self)  # fits a laptop screen

    # --- public API ---------------------------------------------------------------------------

    def show_grid(self) -> Layer | None:
        """Outline the selected run's patch grid (a Shapes layer, on the slice in 2-D, wireframes in 3-D)."""
        record = self._selected_run()
        if record is None:
            return None
        grid = record.result.grid
        if self._grid_overlay is not None:
            self._grid_overlay.remove()
        name = f"patch grid [{record.name}]"
        self._grid_overlay = BoxOverlay(self._viewer, name, grid.shape, self._model_where(record), color=GRID_COLOR)
        self._grid_overlay.set_boxes(grid.boxes())
        counts = " × ".join(map(str, grid.counts))
        self._status.value = (
            f"{len(grid)} patches of {' × '.join(map(str, grid.patch_size))} voxels ({counts}), overlap "
            f"{grid.overlap:g}, border '{grid.border}'."
        )
        return self._grid_overlay.layer

    def show_weights(self, mode: str | None = None) -> Any:
        """Show `mode`'s weight kernel (on the central patch) and its per-voxel weight sum over the volume.

        Returns:
            None when the run fused `mode` (the layers are shown at once), else the worker that
            computes the sum from the grid.
        """
        record = self._selected_run()
        if record is None:
            return None
        mode = mode or self._mode.value
        self._mode.value = mode
        if mode in record.result.weight_sums:
            self._display_weights(record, mode, record.result.weight_sums[mode])
            return None
        connections = {
            "returned": lambda sums: self._display_weights(record, mode, sums),
            "errored": self._report_error,
            "finished": self._clear_worker,
        }
        self._worker = create_worker(weight_sum, record.result.grid, mode, _connect=connections)
        return self._worker

    def compare(self) -> Any:
        """Show tiling, uniform and spline of the selected run side by side, plus where they disagree.

        Returns:
            The worker computing each mode's metrics against the reference mask, or None (no
            reference chosen, or nothing to compare).
        """
        record = self._selected_run()
        if record is None:
            return None
        probabilities = {m: record.result.probabilities[m] for m in COMPARED_MODES if m in record.result.probabilities}
        if len(probabilities) < 2:
            show_error(
                f"Run {record.name!r} fused only {', '.join(record.result.probabilities)}: run it again from the "
                "Inference dock, which fuses tiling, uniform and spline from the same patch predictions."
            )
            return None
        threshold = float(record.settings.threshold)
        spread, differ = disagreement(probabilities), mask_disagreement(probabilities, threshold)
        cells_of = CompareCells(self._viewer, self._where(record, "comparison"), self._backdrop(record), record.name)
        cells = [cells_of.mode(mode, prob, threshold) for mode, prob in probabilities.items()]
        cells.append(cells_of.disagreement(spread, differ))
        self._arrange(cells)
        self._status.value = (
            f"Grid view, left to right and top to bottom: {', '.join(probabilities)}, disagreement (max - min "
            f"probability; up to {float(spread.max()):.2f}; the masks differ on {int(differ.sum())} voxels)."
        )
        return self._start_metrics(record, probabilities, threshold)

    def end_compare(self) -> None:
        """Leave the comparison: remove its layers, show the hidden layers again, restore the grid setting."""
        remove_layers(self._viewer, [layer.name for layer in self._comparison if layer in self._viewer.layers])
        for layer in self._hidden_by_comparison:  # the weight heatmaps stay hidden: they would cover the image
            if layer in self._viewer.layers and layer.metadata.get(ROLE_KEY) not in _HEATMAP_ROLES:
                layer.visible = True
        if self._grid_before is not None:
            grid = _grid_model(self._viewer)
            grid.enabled, grid.stride = self._grid_before
            self._viewer.reset_view()
        self._comparison, self._hidden_by_comparison, self._grid_before = [], [], None
        self._single_button.enabled = False

    @property
    def busy(self) -> bool:
        """Whether metrics or a weight sum are being computed."""
        return self._worker is not None

    @property
    def comparing(self) -> bool:
        """Whether the comparison grid is shown."""
        return bool(self._comparison)

    # --- runs and placement -------------------------------------------------------------------

    def _run_choices(self, widget: Any = None) -> list[str]:
        return [run.name for run in reversed(self._session.runs)]

    def _selected_run(self) -> RunRecord | None:
        by_name = {run.name: run for run in self._session.runs}
        record = by_name.get(self._run.value) or self._session.latest
        if record is None:
            show_error("No inference run to explore yet: run one in the Inference dock first.")
        return record

    def _on_run_finished(self, record: RunRecord) -> None:
        self._run.reset_choices()
        self._run.value = record.name

    def _where(self, record: RunRecord, role: str | None = None) -> dict[str, Any]:
        """Placement of a layer of the run (see `placement`): its geometry, else the layer it was computed on."""
        if record.geometry is not None:
            return placement(record.geometry, role)
        for source in ("probability", "backdrop"):
            name = record.layers.get(source)
            if name in self._viewer.layers:
                return placement(self._viewer.layers[name], role)
        metadata = {} if role is None else {ROLE_KEY: role}
        return {"scale": (1.0, 1.0, 1.0), "translate": (0.0, 0.0, 0.0), "metadata": metadata}

    def _model_where(self, record: RunRecord, role: str | None = None) -> dict[str, Any]:
        """Placement of what lives in the model's space (patch grid, weights): drawn at its own spacing."""
        space = record.result.model_space
        if space is None or not space.resampled:
            return self._where(record, role)
        where = placement(space.geometry, role)
        where["metadata"].pop(METADATA_KEY, None)  # not on the volume's grid: never save it there
        return where

    # --- weights ------------------------------------------------------------------------------

    def _display_weights(self, record: RunRecord, mode: str, sums: np.ndarray) -> None:
        self._show_weight_sum(record, mode, sums)
        self._show_kernel(record, mode)  # above the sum
        if self._grid_overlay is not None and self._grid_overlay.attached:  # the outlines stay visible on top
            layers = self._viewer.layers
            layers.move(layers.index(self._grid_overlay.layer), len(layers))

    def _show_kernel(self, record: RunRecord, mode: str) -> None:
        grid = record.result.grid
        where = self._model_where(record, "weight kernel")
        origin = grid.origins[central_patch(grid)]
        where["translate"] = tuple(t + o * s for t, o, s in zip(where["translate"], origin, where["scale"]))
        where["metadata"].pop(METADATA_KEY, None)  # the kernel is not on the volume's grid: never save it there
        show_layer(
            self._viewer,
            f"weight kernel [{mode} · {record.name}]",
            weight_kernel(mode, grid.patch_size),
            "image",
            **where,
            colormap=KERNEL_COLORMAP,
            contrast_limits=(0.0, 1.0),
        )

    def _show_weight_sum(self, record: RunRecord, mode: str, sums: np.ndarray) -> None:
        high = float(sums.max()) if sums.size else 1.0
        show_layer(
            self._viewer,
            f"weight sum [{mode} · {record.name}]",
            sums,
            "image",
            **self._model_where(record, "weight sum"),
            colormap=WEIGHT_COLORMAP,
            contrast_limits=(0.0, high if high > 0 else 1.0),
            opacity=0.8,
        )
        self._status.value = (
            f"{mode}: weight sum from {float(sums.min()):.3g} (volume borders) to {high:.3g}; the kernel "
            "sits on the central patch."
        )

    # --- comparison ---------------------------------------------------------------------------

    def _backdrop(self, record: RunRecord) -> Layer | None:
        name = record.layers.get("backdrop")
        return self._viewer.layers[name] if name in self._viewer.layers else None

    def _arrange(self, cells: list[list[Layer]]) -> None:
        """Put each cell's layers in one view of napari's grid mode and hide every other layer meanwhile."""
        layers = [layer for cell in cells for layer in cell]
        grid = _grid_model(self._viewer)
        if not self.comparing:
            self._grid_before = (grid.enabled, grid.stride)
        for layer in self._viewer.layers:
            if layer not in layers and layer.visible:
                layer.visible = False
                self._hidden_by_comparison.append(layer)
        for layer in layers:
            layer.visible = True
        # grid mode groups consecutive layers from the bottom of the list, `stride` per view
        self._viewer.layers.move_multiple([self._viewer.layers.index(layer) for layer in layers], 0)
        grid.stride = len(cells[0])
        grid.enabled = True
        self._viewer.reset_view()
        self._comparison = layers
        self._single_button.enabled = True

    # --- metrics ------------------------------------------------------------------------------

    def _reference_choices(self, widget: Any = None) -> list[tuple[str, Layer]]:
        layers = self._viewer.layers
        return [(layer.name, layer) for layer in layers if isinstance(layer, Labels) and not is_result(layer)]

    def _on_layer_inserted(self, event: Any) -> None:
        """A subject's reference mask opened after the dock becomes the reference (unless one is chosen)."""
        self._reference.reset_choices()
        if self._reference.value is None and event.value.name == "reference mask":
            self._set_default_reference()

    def _set_default_reference(self) -> None:
        if "reference mask" in self._viewer.layers and isinstance(self._viewer.layers["reference mask"], Labels):
            self._reference.value = self._viewer.layers["reference mask"]

    def _start_metrics(self, record: RunRecord, probabilities: dict[str, np.ndarray], threshold: float) -> Any:
        reference = self._reference.value
        self.metrics = {}
        self._table.value = mode_table({}, _METRIC_KEYS)
        if reference is None:
            return None
        spacing = record.geometry.spacing if record.geometry is not None else tuple(reference.scale[-3:])
        if tuple(reference.data.shape) != next(iter(probabilities.values())).shape:
            show_error(
                f"Reference {reference.name!r} has shape {tuple(reference.data.shape)} but run {record.name!r} "
                f"has {next(iter(probabilities.values())).shape}: choose this subject's reference mask."
            )
            return None
        connections = {"returned": self._show_metrics, "errored": self._report_error, "finished": self._clear_worker}
        self._worker = create_worker(
            mode_metrics,
            probabilities,
            np.asarray(reference.data) > 0,
            threshold=threshold,
            spacing=spacing,
            _connect=connections,
        )
        return self._worker

    def _show_metrics(self, metrics: dict[str, dict[str, Any]]) -> None:
        self.metrics = metrics
        self._table.value = mode_table(metrics, _METRIC_KEYS)

    def _report_error(self, err: Exception) -> None:
        notify_or_raise(err)

    def _clear_worker(self) -> None:
        self._worker = None


def _grid_model(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's grid-mode settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid
