"""The Lesion review dock's TP/FN/FP colours over the images: one labels layer in the viewer (added the first
time, updated in place after) and the coronal and sagittal views beside the canvas that draw it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Image, Labels, Layer

from napari_lesionseg._napari._layers import confusion_overlay
from napari_lesionseg._napari._model_inputs import image_layers, matching_layer
from napari_lesionseg._napari._ortho_views import OrthoViews

if TYPE_CHECKING:
    import napari

    from napari_lesionseg.evaluation.review import Review

__all__ = ["OVERLAY_NAME", "ReviewOverlay", "backdrop"]

OVERLAY_NAME = "lesion review (TP/FN/FP)"


class ReviewOverlay:
    """The overlay `layer` (None until first painted, and once removed), the `mode` it was last painted in, and
    `ortho`, the two other planes."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        self.layer: Labels | None = None
        self.mode: str | None = None
        self.ortho = OrthoViews(viewer)

    @property
    def shown(self) -> bool:
        """Whether the overlay layer is in the viewer."""
        return self.layer is not None and self.layer in self._viewer.layers

    def paint(self, review: Review, source: Labels, mode: str) -> None:
        """Colour `review` ``mode``-wise on `source`'s grid: the shown layer in place, else a new layer added."""
        self.mode = mode
        data = review.confusion(mode)
        if self.shown:
            self.layer.data = data
            self.layer.scale, self.layer.translate = source.scale, source.translate
            return
        # Assigned before it is added: adding makes napari reset the dock's choices, which re-enters the dock
        # (its layer choices leave `layer` out, its mode slot compares with `mode`).
        self.layer = confusion_overlay(data, source, OVERLAY_NAME)
        self._viewer.add_layer(self.layer)

    def draw_planes(self, image: Image | None) -> None:
        """Draw the overlay over `image` in the ortho views from now on."""
        self.ortho.show(image, self.layer)

    def forget(self, layer: Layer) -> None:
        """`layer` left the viewer: if it was the overlay, the next `paint` adds a new one."""
        if layer is self.layer:
            self.layer = None


def backdrop(viewer: napari.viewer.Viewer) -> Image | None:
    """The image the ortho views draw the overlay over: the FLAIR, else the first input image."""
    return matching_layer(viewer, "FLAIR") or next(iter(image_layers(viewer)), None)
