"""Dock text broken into lines in code, not by Qt.

A word-wrapped Qt label gives the dock holding it a height-for-width, and Qt caches that per width
inside the docks' scroll area: text that grows by a line (or a selector beside it that gains rows)
keeps its old height and is clipped or squeezed. Text wrapped here has a plain height.
"""

from __future__ import annotations

import textwrap

__all__ = ["LINE_CHARACTERS", "wrapped"]

#: Characters per line: about the 300 pixels the docks give their text in napari's font.
LINE_CHARACTERS = 52


def wrapped(text: str, characters: int = LINE_CHARACTERS) -> str:
    """`text` in lines of at most `characters` characters, its own line breaks kept."""
    return "\n".join(textwrap.fill(line, characters) for line in str(text).splitlines())
