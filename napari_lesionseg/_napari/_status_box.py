"""A dock's status line that never cuts a message: a read-only box a few lines tall that wraps and scrolls.

A word-wrapped `QLabel` inside a dock's scroll area gets the height of one or two lines whatever its
text (Qt's layouts do not ask a wrapped label for its height at the dock's width), so a long status
was cut mid-sentence. A fixed-height text box shows the first lines and scrolls to the rest.
"""

from __future__ import annotations

from magicgui.widgets import TextEdit
from qtpy.QtWidgets import QFrame, QSizePolicy

__all__ = ["STATUS_LINES", "status_box"]

#: Lines of text a status box shows before it scrolls.
STATUS_LINES = 4


def status_box(lines: int = STATUS_LINES, min_width: int = 300) -> TextEdit:
    """A read-only, wrapping text box `lines` lines tall (its `value` is the plain text shown)."""
    box = TextEdit(value="")
    native = box.native
    native.setReadOnly(True)
    native.setFrameShape(QFrame.Shape.NoFrame)
    native.setMinimumWidth(min_width)
    margins = native.contentsMargins()
    document_margin = 2 * native.document().documentMargin()
    native.setFixedHeight(int(native.fontMetrics().lineSpacing() * lines + document_margin + margins.top() + margins.bottom()))
    native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return box
