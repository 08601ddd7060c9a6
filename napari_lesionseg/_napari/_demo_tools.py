"""What the headless demo does between steps: raise a dock, wait on the event loop, take a screenshot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import napari

__all__ = ["process_events", "raise_dock", "screenshot", "scroll_to", "show_only_overlays", "wait"]


def show_only_overlays(viewer: napari.Viewer, keep: Sequence[str]) -> None:
    """Hide every layer but those whose names start with one of `keep` (earlier steps' heatmaps, grids...)."""
    for layer in viewer.layers:
        layer.visible = layer.name.startswith(tuple(keep))


def raise_dock(widget: Any) -> None:
    frame = widget.native.parent()
    while frame is not None and not hasattr(frame, "raise_"):
        frame = frame.parent()
    if frame is not None:
        frame.raise_()
    process_events()


def screenshot(viewer: napari.Viewer, out_dir: Path, name: str, *, canvas_only: bool = False) -> str:
    process_events()
    viewer.screenshot(str(out_dir / name), canvas_only=canvas_only)
    return name


def process_events() -> None:
    """One pass of the event loop, as `app.exec()` would run it.

    processEvents() alone leaves ``deleteLater()`` requests pending: napari's finished "Opening..."
    progress bar would then never go, and its animated activity spinner would repaint the whole
    window about 20 times a second for the rest of the session (under software OpenGL that costs
    more CPU than the network's inference itself).
    """
    from qtpy.QtCore import QEvent

    app = napari.qt.get_qapp()
    for _ in range(3):
        app.processEvents()
        app.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def wait(done: Any, what: str, *, timeout: float = 300) -> None:
    """Run the Qt event loop until `done()` holds (a clear error after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited {timeout:.0f} s for {what}")
        process_events()
        time.sleep(0.02)


def scroll_to(dock: Any, widget: Any) -> None:
    """Scroll `dock` (its contents are in a scroll area) until `widget` (a magicgui widget) is in view."""
    from qtpy.QtWidgets import QScrollArea

    area = dock.native.findChild(QScrollArea)
    if area is not None:
        area.ensureWidgetVisible(widget.native)
    process_events()
