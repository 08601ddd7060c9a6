"""The layers one inference run fills in, added to the viewer a step at a time.

Adding a layer costs napari about 0.3 s on a 2-core machine with software OpenGL (layer list,
controls, vispy node, first shader compile), so adding a run's four layers at once would freeze the
viewer for over a second. `RunLayers` owns the arrays the batches are pasted into from the start,
and adds the layers that show them one per event-loop pass (`next_step`); the viewer stays
responsive in between, and a batch that arrives before its layer exists is already in the array
the layer will show.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Layer
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from napari_lesionseg._napari._layers import (
    RUN_MASK_COLORS,
    RUN_PROBABILITY_COLORMAPS,
    BoxOverlay,
    placement,
    remove_layers,
    show_layer,
    single_color_labels,
)

if TYPE_CHECKING:
    import napari.viewer

#: Pause between adding two of a run's layers (ms), so that the viewer repaints and takes input in between.
LAYER_STEP_MS = 30

__all__ = ["LayerSteps", "result_layer_names", "MASK_COLOR", "PATCH_COLOR", "PROBABILITY_COLORMAP", "UNCERTAINTY_COLORMAP", "RunLayers"]


#: Perceptually uniform colormaps: probability (additive over the FLAIR; the first run's) and uncertainty.
PROBABILITY_COLORMAP = RUN_PROBABILITY_COLORMAPS[0]
UNCERTAINTY_COLORMAP = "viridis"
#: The one colour of the lesion mask (Labels), chosen to stand out over magma and grey.
MASK_COLOR = RUN_MASK_COLORS[0]
#: Appended to the probability layer of a run that did not finish.
PARTIAL_SUFFIX = " (partial)"
#: Colour of the outline of the patches being predicted.
PATCH_COLOR = "lime"
#: Largest possible spread of probabilities in [0, 1] (the uncertainty's contrast limit).
MAX_STD = 0.5


class RunLayers:
    """A run's probability, mask and uncertainty arrays, and the layers (plus patch outline) showing them.

    Args:
        viewer: the viewer.
        names: layer names by role (``probability``, ``mask``, ``uncertainty``, ``patches``).
        reference: an input layer; the results are placed on its grid.
        stale: names of earlier layers to remove first (one per step as well).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        names: dict[str, str],
        reference: Layer,
        stale: Sequence[str] = (),
        style: int = 0,
    ) -> None:
        self._viewer, self._names, self._reference = viewer, names, reference
        self._mask_color = RUN_MASK_COLORS[style % len(RUN_MASK_COLORS)]
        self._colormap = RUN_PROBABILITY_COLORMAPS[style % len(RUN_PROBABILITY_COLORMAPS)]
        shape = tuple(reference.data.shape)
        self.probability_data = np.zeros(shape, dtype=np.float32)
        self.mask_data = np.zeros(shape, dtype=np.uint8)
        self.uncertainty_data = np.zeros(shape, dtype=np.float32)
        self.probability: Layer | None = None
        self.mask: Layer | None = None
        self.uncertainty: Layer | None = None
        self.outline: BoxOverlay | None = None
        self.boxes = np.zeros((0, 2, 3), dtype=np.int64)
        self._added: set[str] = {"outline"}  # roles whose layer this run created (the outline always is)
        steps: list[Callable[[], Any]] = [lambda name=name: remove_layers(viewer, [name]) for name in stale]
        # Each layer is added hidden and shown a step later: its first drawing (shader compilation
        # included) then comes in another event-loop pass than the adding, and neither blocks long.
        steps += [
            self._add_probability, lambda: self._show("probability"), self._add_mask, lambda: self._show("mask"),
            self._add_uncertainty, self._add_outline, lambda: self._show("outline"),
        ]  # fmt: skip
        self._steps = deque(steps)

    @property
    def complete(self) -> bool:
        """Whether no step remains (every layer added, or removed for a finished or stopped run)."""
        return not self._steps

    def next_step(self) -> bool:
        """Take the next step (add, show or remove one layer); True while steps remain."""
        if self._steps:
            self._steps.popleft()()
        return bool(self._steps)

    def all_steps(self) -> None:
        """Take every remaining step now."""
        while self.next_step():
            pass

    def finish(self) -> None:
        """For a finished run: every layer now, and the patch outline's removal as the next step."""
        self.all_steps()
        if self.outline is not None:
            self._steps.append(self.outline.remove)
            self.outline = None

    def keep_probability_only(self) -> None:
        """For a run that stopped early: the remaining steps show the partial probability and remove
        the run's other layers (one per step, like the adding)."""
        steps: list[Callable[[], Any]] = [] if self.probability is not None else [self._add_probability]
        steps.append(lambda: self._show("probability"))
        steps.append(self._mark_partial)
        outline, others = self.outline, [layer for layer in (self.mask, self.uncertainty) if layer is not None]
        if outline is not None:
            steps.append(outline.remove)
        steps += [lambda layer=layer: self._remove(layer) for layer in others]
        self._steps = deque(steps)
        self.outline = self.mask = self.uncertainty = None

    def _mark_partial(self) -> None:
        """The name says the probability is partial (a cancelled run), so nobody takes it for a result."""
        if self.probability is not None and not self.probability.name.endswith(PARTIAL_SUFFIX):
            self.probability.name = self.probability.name + PARTIAL_SUFFIX

    def refresh(self) -> None:
        """Redraw the layers that exist."""
        for layer in (self.probability, self.mask, self.uncertainty):
            if layer is not None and layer in self._viewer.layers:
                layer.refresh()

    def shown(self) -> dict[str, str]:
        """Names of the result layers in the viewer, by role."""
        layers = {"probability": self.probability, "mask": self.mask, "uncertainty": self.uncertainty}
        return {role: layer.name for role, layer in layers.items() if layer is not None and layer in self._viewer.layers}

    def set_boxes(self, boxes: np.ndarray) -> None:
        """Outline these patches (once the outline layer exists: it starts with the latest boxes)."""
        self.boxes = boxes
        if self.outline is not None:
            self.outline.set_boxes(boxes)

    def _remove(self, layer: Layer) -> None:
        if layer in self._viewer.layers:
            self._viewer.layers.remove(layer)

    def remove_uncertainty(self) -> None:
        if self.uncertainty is not None:
            self._remove(self.uncertainty)
        self.uncertainty = None

    def _show(self, role: str) -> None:
        """Make a layer this run added visible (a re-run's reused layer keeps the user's choice)."""
        layer = self.outline.layer if role == "outline" and self.outline is not None else getattr(self, role)
        if layer is not None and role in self._added:
            layer.visible = True

    def _note_if_new(self, role: str) -> None:
        if self._names[role] not in self._viewer.layers:
            self._added.add(role)

    def _add_probability(self) -> None:
        self._note_if_new("probability")
        self.probability = show_layer(
            self._viewer, self._names["probability"], self.probability_data, "image", visible=False,
            **placement(self._reference, "probability"), colormap=self._colormap,
            blending="additive", contrast_limits=(0.0, 1.0),
        )  # fmt: skip

    def _add_mask(self) -> None:
        self._note_if_new("mask")
        self.mask = show_layer(
            self._viewer, self._names["mask"], self.mask_data, "labels", visible=False,
            **placement(self._reference, "mask"), **single_color_labels(self._mask_color), opacity=0.5,
        )  # fmt: skip

    def _add_uncertainty(self) -> None:
        self.uncertainty = show_layer(
            self._viewer, self._names["uncertainty"], self.uncertainty_data, "image", visible=False,
            **placement(self._reference, "uncertainty"), colormap=UNCERTAINTY_COLORMAP,
            blending="additive", contrast_limits=(0.0, MAX_STD),
        )  # fmt: skip

    def _add_outline(self) -> None:
        self.outline = BoxOverlay(
            self._viewer, self._names["patches"], self.probability_data.shape, placement(self._reference),
            color=PATCH_COLOR, footprints=True, visible=False, segments=True,
        )  # fmt: skip
        self.outline.set_boxes(self.boxes)


def result_layer_names(run: str) -> dict[str, str]:
    """Names of a run's layers by role, e.g. ``"lesion probability [beta 1.5]"``."""
    return {
        "probability": f"lesion probability [{run}]",
        "mask": f"lesion mask [{run}]",
        "uncertainty": f"uncertainty [{run}]",
        "patches": f"current patch [{run}]",
    }


class LayerSteps:
    """Takes runs' layer steps (add, show, remove) one per event-loop pass, the window's repaint held to the next.

    Adding or removing a layer and the repaint that follows each take up to about 0.3 s with software
    OpenGL on two cores; done in one pass they would stall the viewer twice as long. The network
    waits until the last layer is in: adding a layer while it runs takes napari twice as long.
    """

    def __init__(self, widget: QWidget) -> None:
        self._widget = widget
        self._stepping: set[int] = set()

    @property
    def busy(self) -> bool:
        """Whether some run's layers are still being added or removed."""
        return bool(self._stepping)

    def start(self, layers: RunLayers, done: Callable[[], Any]) -> None:
        """Take `layers`' steps from the next pass on (once at a time per run); call `done` after the last."""
        if id(layers) not in self._stepping:
            self._stepping.add(id(layers))
            QTimer.singleShot(0, lambda: self._step(layers, done))

    def _step(self, layers: RunLayers, done: Callable[[], Any]) -> None:
        more = False
        try:
            more = self._without_repaint(layers.next_step)
        finally:
            if more:
                QTimer.singleShot(LAYER_STEP_MS, lambda: self._step(layers, done))
            else:
                self._stepping.discard(id(layers))
                done()

    def _without_repaint(self, change: Callable[[], Any]) -> Any:
        window = self._widget.window()
        window.setUpdatesEnabled(False)
        try:
            return change()
        finally:
            QTimer.singleShot(0, lambda: window.setUpdatesEnabled(True))
