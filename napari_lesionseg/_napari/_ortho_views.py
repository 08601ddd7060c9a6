"""The two other planes beside napari's canvas: coronal and sagittal slices through the current point, superior
at the top and the patient's right on the left (radiological), with the review's TP/FN/FP colours and a
crosshair. They follow the viewer's point (the slider and a selected lesion), so the three planes stay linked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container, Label
from napari.layers import Image, Labels
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel

from napari_lesionseg.constants import CONFUSION_COLORS

if TYPE_CHECKING:
    import napari

__all__ = ["OrthoViews", "plane_rgb"]

#: Height of each plane's picture (pixels).
VIEW_HEIGHT = 160
_CROSSHAIR = np.array([255, 255, 0], np.uint8)
_OVERLAY_ALPHA = 0.6


def plane_rgb(
    image: np.ndarray, overlay: np.ndarray | None, point: tuple[int, int, int], axis: int, limits: tuple[float, float]
) -> np.ndarray:
    """RGB (rows, cols, 3) of the canonical (S, P, L) slice through `point` normal to `axis` (1 coronal, 2 sagittal).

    Rows run superior to inferior (superior at the top); columns keep the array's order (L: the patient's
    right on the left; P: anterior on the left). Overlay labels take `CONFUSION_COLORS`; a crosshair marks `point`.
    """
    index = [slice(None)] * 3
    index[axis] = int(point[axis])
    grey = np.asarray(image[tuple(index)], dtype=np.float32)[::-1]  # S up
    low, high = limits
    grey = np.clip((grey - low) / max(high - low, 1e-6), 0.0, 1.0)
    rgb = np.repeat((255 * grey)[..., None], 3, axis=-1)
    if overlay is not None:
        labels = np.asarray(overlay[tuple(index)])[::-1]
        for value, color in CONFUSION_COLORS.items():
            where = labels == value
            rgb[where] = (1 - _OVERLAY_ALPHA) * rgb[where] + _OVERLAY_ALPHA * 255 * np.asarray(color[:3])
    rgb = rgb.astype(np.uint8)
    row = image.shape[0] - 1 - int(point[0])
    col = int(point[2] if axis == 1 else point[1])
    rgb[row, :: 2] = _CROSSHAIR
    rgb[:: 2, col] = _CROSSHAIR
    return rgb


class OrthoViews(Container):
    """Coronal and sagittal pictures of an image layer (and an overlay) through the viewer's point."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(layout="horizontal", labels=False)
        self._viewer = viewer
        self.image: Image | None = None
        self.overlay: Labels | None = None
        self.pictures = {1: QLabel(), 2: QLabel()}
        self.titles = {1: Label(value="Coronal"), 2: Label(value="Sagittal")}
        for axis in (1, 2):
            self.pictures[axis].setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.append(Container(widgets=[self.titles[axis]], labels=False))
            self[-1].native.layout().addWidget(self.pictures[axis])
        viewer.dims.events.point.connect(self.refresh)

    def show(self, image: Image | None, overlay: Labels | None = None) -> None:
        """Draw `image` (and `overlay`, on its grid) from now on."""
        self.image, self.overlay = image, overlay
        self.refresh()

    def voxel(self) -> tuple[int, int, int] | None:
        """The viewer's point in the image's voxels (clipped to the volume), or None without an image."""
        if self.image is None or self.image not in self._viewer.layers or self.image.ndim != 3:
            return None
        data = np.asarray(self.image.world_to_data(self._viewer.dims.point[-3:]))
        shape = np.asarray(self.image.data.shape)
        return tuple(int(v) for v in np.clip(np.round(data), 0, shape - 1))  # type: ignore[return-value]

    def refresh(self, event: object = None) -> None:
        """Redraw both planes through the current point."""
        point = self.voxel()
        if point is None:
            for axis in (1, 2):
                self.pictures[axis].clear()
            return
        overlay = self.overlay.data if self.overlay is not None and self.overlay in self._viewer.layers else None
        if overlay is not None and np.shape(overlay) != self.image.data.shape:
            overlay = None
        spacing = np.asarray(self.image.scale[-3:], dtype=float)
        for axis, columns_axis, name in ((1, 2, "Coronal"), (2, 1, "Sagittal")):
            rgb = plane_rgb(self.image.data, overlay, point, axis, tuple(self.image.contrast_limits))
            self.pictures[axis].setPixmap(_pixmap(rgb, spacing[0] / spacing[columns_axis]))
            world = self._viewer.dims.point[-3:][axis]
            self.titles[axis].value = f"{name} · {'PL'[axis - 1]} {world:.1f} mm"


def _pixmap(rgb: np.ndarray, row_aspect: float) -> QPixmap:
    """`rgb` as a pixmap `VIEW_HEIGHT` high, rows stretched by the voxel aspect (thick slices look thick)."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    qimage = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    target_w = max(1, round(VIEW_HEIGHT * width / max(height * row_aspect, 1e-6)))
    return QPixmap.fromImage(qimage).scaled(target_w, VIEW_HEIGHT, Qt.AspectRatioMode.IgnoreAspectRatio)
