"""Dock widgets laid out side by side, without magicgui's labels column."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container

__all__ = ["row"]


def row(*widgets: Any) -> Container:
    """A horizontal container of `widgets` (buttons, a spin box beside its button)."""
    return Container(widgets=list(widgets), layout="horizontal", labels=False)
