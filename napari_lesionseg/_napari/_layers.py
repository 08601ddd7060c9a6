"""Helpers the docks share to show results: add-or-replace layers by name, and outlines of 3-D boxes.

napari draws a Shapes layer's shape on a 2-D slice only when the shape lies in that slice's plane,
so a 3-D patch box cannot be one shape visible on every slice it covers. :class:`BoxOverlay` keeps
a Shapes layer in step with the viewer instead: in 2-D it holds one rectangle per box (footprint)
on the displayed slice, in 3-D two wireframe paths per box.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import napari.layers
import numpy as np
from napari.layers import Labels, Layer, Shapes, Vectors

from napari_lesionseg._napari.metadata import (
    geometry_from_layer_metadata,
    layer_metadata,
    path_from_layer_metadata,
    subject_from_layer_metadata,
)
from napari_lesionseg.constants import CONFUSION_COLORS
from napari_lesionseg.data.geometry import Geometry

if TYPE_CHECKING:
    import napari.viewer

__all__ = [
    "ROLE_KEY", "BoxOverlay", "check_save_as", "is_result", "placement", "remove_layers", "show_layer",
    "single_color_labels",
]  # fmt: skip

#: Metadata key marking the layers this plugin computed (probability, uncertainty, heatmaps...).
ROLE_KEY = "lesionseg_role"
#: Corner order of the two paths that draw a box's 12 edges without turning back on an edge
#: (napari's 3-D tube meshes are undefined where a path reverses). Corner bits: (z, y, x).
_WIREFRAME_PATHS = ((0, 1, 3, 2, 0, 4, 5, 7, 6, 4), (1, 5, 7, 3, 2, 6))
#: Opacity of the footprint of a box that does not cover the displayed slice.
_FOOTPRINT_ALPHA = 0.35


def placement(reference: Layer | Geometry, role: str | None = None) -> dict[str, Any]:
    """``scale``, ``translate`` and ``metadata`` that put a new layer on the grid of `reference`.

    Args:
        reference: a layer on the grid, or the grid's `Geometry`.
        role: marks the layer as a result of this plugin (``metadata[ROLE_KEY]``), e.g. ``"probability"``.
    """
    if isinstance(reference, Geometry):
        geometry, scale, translate = reference, reference.spacing, reference.napari_translate
    else:
        geometry = geometry_from_layer_metadata(reference.metadata)
        scale, translate = tuple(reference.scale[-3:]), tuple(reference.translate[-3:])
    subject = None if isinstance(reference, Geometry) else subject_from_layer_metadata(reference.metadata)
    metadata = layer_metadata(geometry, subject=subject) if geometry is not None else {}
    if role is not None:
        metadata[ROLE_KEY] = role
    return {"scale": tuple(scale), "translate": tuple(translate), "metadata": metadata}


def is_result(layer: Layer) -> bool:
    """Whether `layer` holds a result this plugin computed (never an input to segment)."""
    return ROLE_KEY in layer.metadata


def show_layer(
    viewer: napari.viewer.Viewer, name: str, data: np.ndarray, layer_type: str, *, visible: bool = True, **kwargs: Any
) -> Layer:
    """Show `data` in the layer called `name`: updated in place when it fits, else (re)created.

    A layer of that name, type, shape and dtype is updated (it keeps its place in the layer list and
    its visibility); one that does not fit is replaced at the same position.

    Args:
        viewer: the viewer.
        name: the layer's name.
        data: the array to show (kept by reference, not copied).
        layer_type: ``"image"`` or ``"labels"``.
        visible: visibility of a newly created layer.
        **kwargs: layer properties (``scale``, ``colormap``...), applied on creation and on update.
    """
    existing = viewer.layers[name] if name in viewer.layers else None
    if existing is not None and _fits(existing, data, layer_type):
        existing.data = data
        for key, value in kwargs.items():
            setattr(existing, key, value)
        return existing
    layer_class = getattr(napari.layers, layer_type.capitalize())
    accepted = inspect.signature(layer_class).parameters
    layer = layer_class(data, name=name, visible=visible, **{k: v for k, v in kwargs.items() if k in accepted})
    for key, value in kwargs.items():
        if key not in accepted:  # properties only settable after creation, e.g. Labels.contour
            setattr(layer, key, value)
    if existing is None:
        viewer.add_layer(layer)
    else:
        index = viewer.layers.index(existing)
        viewer.layers.remove(existing)
        viewer.layers.insert(index, layer)
    return layer


def check_save_as(viewer: napari.viewer.Viewer, path: Path) -> None:
    """Refuse a "Save as" path that is an opened file, is named like a subject's input, or would replace a
    file this program did not write: the output policy of every command (`data.outputs`)."""
    from napari_lesionseg.data.outputs import Output, check_outputs

    opened = [source for layer in viewer.layers if (source := path_from_layer_metadata(layer.metadata))]
    check_outputs([Output(path, "Save as")], inputs=opened)


def remove_layers(viewer: napari.viewer.Viewer, names: Sequence[str]) -> None:
    """Remove the layers called `names` that exist."""
    for name in names:
        if name in viewer.layers:
            viewer.layers.remove(name)


#: Distinct colours, so a reader never mistakes one mask for another: the reference, the corrected mask,
#: and each kept run (its mask colour and its probability colormap, in the order the runs were made).
REFERENCE_COLOR = "yellow"
CORRECTED_COLOR = "orange"
RUN_MASK_COLORS = ("cyan", "deeppink", "lime", "dodgerblue", "violet")
RUN_PROBABILITY_COLORMAPS = ("magma", "bop orange", "green", "bop blue", "magenta")


def single_color_labels(color: str) -> dict[str, Any]:
    """Labels layer properties that paint every nonzero label in one `color`."""
    from napari.utils.colormaps import DirectLabelColormap

    return {"colormap": DirectLabelColormap(color_dict={None: color, 0: "transparent"})}


class BoxOverlay:
    """A Shapes (or Vectors) layer outlining ``(N, 2, 3)`` ``[start, stop)`` voxel boxes, kept in step with the viewer.

    In 2-D the boxes covering the displayed slice are drawn as rectangles on it; with
    ``footprints=True`` the others are drawn faded at their in-plane position, so the user sees
    where work happens off-slice. In 3-D every box is a wireframe.

    Args:
        viewer: the viewer.
        name: the layer's name (an existing layer of that name is replaced).
        shape: the ``(Z, Y, X)`` shape of the volume the boxes lie in.
        where: ``scale`` and ``translate`` of that volume's layers (see `placement`).
        color: edge colour.
        footprints: also draw boxes that do not cover the displayed slice, faded.
        visible: whether the layer starts visible.
        segments: draw with a Vectors layer of edge segments instead of a Shapes layer. It cannot be
            edited, but software OpenGL draws it for the first time about 4 times faster (0.15 s
            against 0.67 s on 2 cores), which matters for an outline that comes and goes with each run.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        name: str,
        shape: Sequence[int],
        where: dict[str, Any],
        *,
        color: str = "white",
        footprints: bool = False,
        visible: bool = True,
        segments: bool = False,
    ) -> None:
        self._viewer = viewer
        self._footprints = footprints
        self._width = max(0.25, max(shape[-2:]) / 250.0)  # data units: about 2 screen pixels with the volume in view
        self.boxes = np.zeros((0, 2, 3), dtype=np.int64)
        self._rgba = _rgba(color)
        remove_layers(viewer, [name])
        common = {"ndim": 3, "name": name, "scale": where["scale"], "translate": where["translate"], "visible": visible}
        self.layer: Shapes | Vectors
        if segments:
            self.layer = Vectors(  # a line's width is its whole width, a Shapes edge's about half of it
                np.zeros((0, 2, 3)), edge_color=color, edge_width=2 * self._width, vector_style="line",
                blending="translucent_no_depth", **common,
            )  # fmt: skip
        else:
            self.layer = Shapes(
                edge_color=color, edge_width=self._width, face_color="transparent", blending="translucent_no_depth",
                **common,
            )  # fmt: skip
            self.layer.editable = False
            self.layer.current_edge_width = self._width  # what shapes set through `data` get
            self.layer.current_edge_color = color
        viewer.add_layer(self.layer)
        self._events = (viewer.dims.events.current_step, viewer.dims.events.ndisplay, viewer.dims.events.order)
        for event in self._events:
            event.connect(self._redraw)
        viewer.layers.events.removed.connect(self._on_removed)
        self._connected = True

    def set_boxes(self, boxes: np.ndarray) -> None:
        """Outline `boxes` (``(N, 2, 3)`` start/stop voxel indices) instead of the current ones."""
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 2, 3)
        self._redraw()

    def remove(self) -> None:
        """Remove the layer from the viewer and stop following it."""
        if self.layer in self._viewer.layers:
            self._viewer.layers.remove(self.layer)
        self._disconnect()

    @property
    def attached(self) -> bool:
        """Whether the layer is still in the viewer."""
        return self.layer in self._viewer.layers

    def _redraw(self, event: Any = None) -> None:
        if self._viewer.dims.ndisplay == 3:
            outlines = [(path, "path") for box in self.boxes for path in _wireframe(box)]
            alphas = [1.0] * len(outlines)
        else:
            outlines, alphas = self._slice_rectangles()
        if isinstance(self.layer, Vectors):
            outlines, alphas = _segments(outlines, alphas)
        # The outlines never leave the volume, so the viewer need not re-measure the layers (the
        # `data` event makes it recompute every dims range, the slowest part of an update).
        with self.layer.events.data.blocker():
            self.layer.data = outlines
        if len(outlines) and min(alphas) < 1.0:
            rgba = np.tile(self._rgba, (len(outlines), 1))
            rgba[:, 3] = alphas
            self.layer.edge_color = rgba

    def _slice_rectangles(self) -> tuple[list[tuple[np.ndarray, str]], list[float]]:
        """Rectangles of the boxes on the displayed slice (one per distinct footprint) and their opacities."""
        offset = self._viewer.dims.ndim - 3
        hidden = [axis - offset for axis in self._viewer.dims.not_displayed if axis >= offset]
        shown = [axis - offset for axis in self._viewer.dims.displayed if axis >= offset]
        if len(hidden) != 1 or len(shown) != 2:
            return [], []
        axis = hidden[0]
        position = float(self.layer.world_to_data(self._viewer.dims.point)[axis])
        index = int(np.floor(position + 0.5))
        covers = (self.boxes[:, 0, axis] <= index) & (index < self.boxes[:, 1, axis])
        keep = np.ones(len(self.boxes), bool) if self._footprints else covers
        drawn: dict[tuple[int, ...], float] = {}
        for box, on_slice in zip(self.boxes[keep], covers[keep]):
            key = tuple(box[:, shown].ravel().tolist())
            drawn[key] = max(drawn.get(key, 0.0), 1.0 if on_slice else _FOOTPRINT_ALPHA)
        rectangles = [(_rectangle(np.reshape(key, (2, 2)), axis, shown, position), "rectangle") for key in drawn]
        return rectangles, list(drawn.values())

    def _on_removed(self, event: Any) -> None:
        if event.value is self.layer:
            self._disconnect()

    def _disconnect(self) -> None:
        if not self._connected:
            return
        self._connected = False
        for event in self._events:
            event.disconnect(self._redraw)
        self._viewer.layers.events.removed.disconnect(self._on_removed)


def _fits(layer: Layer, data: np.ndarray, layer_type: str) -> bool:
    same_type = type(layer).__name__.lower() == layer_type
    return same_type and layer.data.shape == data.shape and layer.data.dtype == data.dtype


def _rgba(color: Any) -> np.ndarray:
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(color)[0]


def _rectangle(footprint: np.ndarray, axis: int, shown: list[int], position: float) -> np.ndarray:
    """Corners, at `position` along `axis`, of ``footprint = [start, stop)`` along the two `shown` axes."""
    (start0, start1), (stop0, stop1) = footprint - 0.5  # voxel edges, not centres
    corners = np.zeros((4, 3))
    corners[:, axis] = position
    corners[:, shown[0]] = (start0, start0, stop0, stop0)
    corners[:, shown[1]] = (start1, stop1, stop1, start1)
    return corners


def _segments(outlines: list[tuple[np.ndarray, str]], alphas: list[float]) -> tuple[np.ndarray, list[float]]:
    """The edges of closed rectangles and open paths as ``(N, 2, 3)`` napari vectors (start, offset)."""
    starts, ends, edge_alphas = [], [], []
    for (points, kind), alpha in zip(outlines, alphas):
        stops = np.roll(points, -1, axis=0) if kind == "rectangle" else points[1:]
        starts.append(points[: len(stops)])
        ends.append(stops)
        edge_alphas += [alpha] * len(stops)
    if not starts:
        return np.zeros((0, 2, 3)), []
    start, end = np.concatenate(starts), np.concatenate(ends)
    return np.stack([start, end - start], axis=1), edge_alphas


def _wireframe(box: np.ndarray) -> list[np.ndarray]:
    """Two paths that together trace the 12 edges of the voxel box ``[start, stop)``."""
    low, high = np.asarray(box[0]) - 0.5, np.asarray(box[1]) - 0.5
    corners = np.array([[(high if bit else low)[k] for k, bit in enumerate(bits)] for bits in np.ndindex(2, 2, 2)])
    return [corners[list(path)] for path in _WIREFRAME_PATHS]


def confusion_overlay(data: np.ndarray, source: Layer, name: str) -> Labels:
    """A TP/FN/FP labels layer (the paper's Fig. 8 colours, background clear) on `source`'s grid."""
    from napari.utils.colormaps import DirectLabelColormap

    colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), **CONFUSION_COLORS}
    return Labels(data, name=name, colormap=DirectLabelColormap(color_dict=colors), opacity=0.8, **placement(source, "review"))


def add_subject_layers(viewer: napari.viewer.Viewer, layer_data: Sequence[tuple]) -> tuple[list[Layer], list[str]]:
    """Add a subject's layers, skipping files already open (opening a folder twice adds nothing twice).

    Returns the layers added and the names of those skipped.
    """
    open_paths = {path_from_layer_metadata(layer.metadata) for layer in viewer.layers} - {None}
    added, skipped = [], []
    for data, kwargs, layer_type in layer_data:
        path = path_from_layer_metadata(kwargs.get("metadata"))
        if path is not None and path in open_paths:
            skipped.append(kwargs.get("name", str(path)))
            continue
        added.append(viewer.add_layer(Layer.create(data, kwargs, layer_type)))
    return added, skipped
