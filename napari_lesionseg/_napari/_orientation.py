"""Radiological display for the canonical (S, P, L) volumes: every plane right way up, named, with its position.

Axial slices (S sliced) already show anterior at the top and the patient's right on the left. In
coronal and sagittal slices the S axis is the vertical one and napari draws it downwards (superior at
the bottom), so the camera's vertical axis is turned up whenever S is displayed vertically. A text
overlay names the plane and the slice position in scanner millimetres ("Axial · S 12.0 mm").
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from napari_lesionseg.data.geometry import CANONICAL_AXCODES

if TYPE_CHECKING:
    import napari

__all__ = ["PLANES", "camera", "plane_text", "show_radiological", "text_overlay"]

#: The plane shown when this canonical axis is the sliced one.
PLANES = {0: "Axial", 1: "Coronal", 2: "Sagittal"}
_FOLLOWED: weakref.WeakSet[Any] = weakref.WeakSet()


def show_radiological(viewer: napari.viewer.Viewer) -> None:
    """Keep `viewer` radiological from now on (idempotent: each dock calls it)."""
    if viewer in _FOLLOWED:
        return
    _FOLLOWED.add(viewer)
    overlay = text_overlay(viewer)
    overlay.position = "top_left"
    overlay.font_size = 11
    for event in (viewer.dims.events.order, viewer.dims.events.ndisplay, viewer.dims.events.ndim,
                  viewer.dims.events.current_step, viewer.dims.events.axis_labels):  # fmt: skip
        event.connect(lambda _event=None: _update(viewer))
    _update(viewer)


def text_overlay(viewer: napari.viewer.Viewer) -> Any:
    """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9, ``viewer.text_overlay`` before)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    return overlays.text if overlays is not None and hasattr(overlays, "text") else viewer.text_overlay


def camera(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def plane_text(viewer: napari.viewer.Viewer) -> str:
    """``"Axial · S 12.0 mm"``: the plane of the displayed 2-D slice and its world position, or ``""``."""
    if viewer.dims.ndim != 3 or viewer.dims.ndisplay != 2:
        return ""
    (sliced,) = viewer.dims.not_displayed
    return f"{PLANES[sliced]} · {CANONICAL_AXCODES[sliced]} {viewer.dims.point[sliced]:.1f} mm"


def _update(viewer: napari.viewer.Viewer) -> None:
    overlay = text_overlay(viewer)
    if viewer.dims.ndim != 3:
        overlay.visible = False
        return
    if all(label.lstrip("-").isdigit() for label in viewer.dims.axis_labels):  # napari's "-3"...: say what they are
        viewer.dims.axis_labels = CANONICAL_AXCODES
    if viewer.dims.ndisplay == 2:
        vertical = viewer.dims.displayed[0]
        camera(viewer).orientation2d = ("up" if vertical == 0 else "down", "right")
    overlay.text = plane_text(viewer)
    overlay.visible = bool(overlay.text)
