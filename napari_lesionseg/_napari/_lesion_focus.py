"""Showing one lesion: the slider at its centre, the view centred and zoomed on it, a ring around it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Layer, Points

from napari_lesionseg._napari._layers import placement
from napari_lesionseg._napari._orientation import camera
from napari_lesionseg.evaluation.review_rows import ReviewRow

if TYPE_CHECKING:
    import napari

__all__ = ["MARKER_NAME", "focus_on"]

MARKER_NAME = "selected lesion"
#: The view shows about this many times the lesion's diameter (some context around it), and never less
#: than `_MIN_FIELD_MM`, nor more than the whole volume.
_FIELD_PER_DIAMETER = 6.0
_MIN_FIELD_MM = 100.0
_RING_COLOR = "yellow"


def focus_on(viewer: napari.viewer.Viewer, layer: Layer, row: ReviewRow) -> Points:
    """Move to `row`'s lesion on `layer`'s grid, zoom so it fills about a sixth of the view, and ring it."""
    world = np.asarray(layer.data_to_world(np.asarray(row.centroid_voxel)), dtype=float)
    for axis in range(min(viewer.dims.ndim, world.size)):  # all axes: the other planes follow the point too
        viewer.dims.set_point(axis, world[axis])
    diameter_mm = _diameter_mm(row, layer)
    _zoom_to(viewer, layer, max(_MIN_FIELD_MM, _FIELD_PER_DIAMETER * diameter_mm))
    camera(viewer).center = tuple(world[axis] for axis in viewer.dims.displayed)
    return _ring(viewer, layer, row, diameter_mm)


def _diameter_mm(row: ReviewRow, layer: Layer) -> float:
    """Diameter of a ball of the lesion's volume (mm)."""
    voxel_mm3 = float(np.prod(layer.scale[-3:]))
    return float(2.0 * (3.0 * row.extent_voxels * voxel_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0))


def _zoom_to(viewer: napari.viewer.Viewer, layer: Layer, field_mm: float) -> None:
    """Zoom so that about `field_mm` of world space spans the view (from the zoom that fits the whole layer)."""
    viewer.reset_view()
    displayed = list(viewer.dims.displayed)
    extent = np.asarray(layer.extent.world[1] - layer.extent.world[0], dtype=float)[displayed]
    view = camera(viewer)
    view.zoom = view.zoom * max(1.0, float(extent.max()) / field_mm)


def _ring(viewer: napari.viewer.Viewer, layer: Layer, row: ReviewRow, diameter_mm: float) -> Points:
    size = max(1.6 * diameter_mm, 6.0) / float(min(layer.scale[-3:]))  # in voxels of `layer`
    point = np.asarray([row.centroid_voxel], dtype=float)
    sliced = [axis for axis in viewer.dims.not_displayed if axis < point.shape[1]]
    # on the displayed slice, where napari draws points: the slider snaps to the finest layer's step,
    # which need not fall on `layer`'s voxels (a 1.5 mm fusion map beside a 2 mm subject)
    shown = np.asarray(layer.world_to_data(np.asarray(viewer.dims.point)[-point.shape[1] :]), dtype=float)
    point[0, sliced] = shown[sliced]
    if MARKER_NAME in viewer.layers:
        marker = viewer.layers[MARKER_NAME]
        marker.scale, marker.translate = layer.scale[-3:], layer.translate[-3:]
        marker.data, marker.size = point, size
        return marker
    marker = Points(
        point, name=MARKER_NAME, size=size, symbol="disc", face_color="transparent", border_color=_RING_COLOR,
        border_width=0.08, **placement(layer, "marker"),
    )  # fmt: skip
    selected, active = list(viewer.layers.selection), viewer.layers.selection.active
    viewer.add_layer(marker)  # which selects it; the user goes on painting the mask they had selected
    viewer.layers.selection.clear()
    viewer.layers.selection.update(selected)
    if active is not None:
        viewer.layers.selection.active = active
    return marker
