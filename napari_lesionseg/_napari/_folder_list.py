"""A list of subject folders the user adds one by one (a folder picker, Add and Clear, and what is in it)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, FileEdit, Label, PushButton
from napari.utils.notifications import show_error

from napari_lesionseg._napari._wrapped import wrapped

__all__ = ["FolderList"]


class FolderList(Container):
    """`title`, then [folder picker] [Add] [Clear], then the folders added so far (`folders`)."""

    def __init__(self, title: str, empty: str) -> None:
        super().__init__(labels=False)
        self._empty = empty
        self._chosen: list[Path] = []
        self._picker = FileEdit(mode="d")
        add, clear = PushButton(text="Add folder"), PushButton(text="Clear")
        self._shown = Label(value=self._text())
        row = Container(widgets=[self._picker, add, clear], layout="horizontal", labels=False)
        self.extend([Label(value=title), row, self._shown])
        add.changed.connect(lambda: self.add(self._picker.value))
        clear.changed.connect(self.clear)

    @property
    def folders(self) -> list[Path]:
        """The folders added, in order."""
        return list(self._chosen)

    def add(self, folder: str | Path) -> bool:
        """Add `folder` (a subject folder, or a folder of subject folders); False, with a notification, if it is not one."""
        folder = Path(folder)
        if not folder.is_dir():
            show_error(f"{folder} is not a folder: choose a subject folder (or a folder of subject folders).")
            return False
        if folder not in self._chosen:
            self._chosen.append(folder)
        self._shown.value = self._text()
        return True

    def clear(self) -> None:
        """Forget every folder."""
        self._chosen.clear()
        self._shown.value = self._text()

    def _text(self) -> str:
        return wrapped("Subject folders: " + (", ".join(f.name for f in self._chosen) if self._chosen else self._empty))
