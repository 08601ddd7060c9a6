"""Docks that fit a laptop screen: a dock's contents go in a scroll area (napari docks the container's
native widget as it is, and magicgui's own `scrollable` is lost when napari takes that widget)."""

from __future__ import annotations

from magicgui.widgets import Container
from qtpy.QtWidgets import QFrame, QLayout, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

__all__ = ["MAX_MINIMUM_HEIGHT", "scroll_contents"]

#: The most a dock may ask for as its minimum height (pixels): a laptop screen shows about 900.
MAX_MINIMUM_HEIGHT = 200


def scroll_contents(container: Container) -> QScrollArea:
    """Move everything `container` shows into a scroll area inside it, so its minimum height stays small."""
    outer = container.native.layout()
    inner = QWidget()
    inner_layout = QVBoxLayout(inner)
    inner_layout.setContentsMargins(outer.contentsMargins())
    inner_layout.setSpacing(outer.spacing())
    inner_layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)  # scroll, never squeeze the widgets
    while outer.count():
        item = outer.takeAt(0)
        widget = item.widget()
        if widget is not None:
            # Never squeezed below its size hint (magicgui containers report a minimum of almost nothing):
            # when the dock is short the scroll bar appears instead.
            policy = widget.sizePolicy()
            policy.setVerticalPolicy(QSizePolicy.Policy.Minimum)
            widget.setSizePolicy(policy)
            inner_layout.addWidget(widget)
        else:
            inner_layout.addItem(item)
    inner_layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(inner)
    scroll.setMinimumHeight(min(MAX_MINIMUM_HEIGHT, inner.minimumSizeHint().height()))
    scroll.setMinimumWidth(inner.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
    scroll.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return scroll
