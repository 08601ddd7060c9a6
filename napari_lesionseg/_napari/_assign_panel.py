"""The Subject dock's modality assignment: for a folder whose file names say nothing, one choice per file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.utils.notifications import show_error

from napari_lesionseg.data.assignments import ASSIGNABLE_ROLES, assign_roles, assigned_roles
from napari_lesionseg.data.naming import is_nifti_path
from napari_lesionseg.errors import LesionSegError

__all__ = ["AssignPanel"]


class AssignPanel(Container):
    """Hidden until `offer(folder)`: a role per NIfTI file; "Open with these modalities" remembers and opens."""

    def __init__(self, open_folder: Callable[[Path], Any]) -> None:
        super().__init__(labels=False)
        self._open_folder = open_folder
        self._folder: Path | None = None
        self.offered = False  # whether the choices wait for the user (`visible` needs a shown window)
        self._title = Label(value="")
        self._choices = Container(labels=True)
        self._apply = PushButton(text="Open with these modalities")
        self.extend([self._title, self._choices, self._apply])
        self._apply.changed.connect(lambda: self.apply())
        self.visible = False

    def offer(self, folder: Path) -> None:
        """Show one role choice per NIfTI file of `folder` (pre-filled with what was assigned before)."""
        self._folder = Path(folder)
        earlier = assigned_roles(folder)
        self._choices.clear()
        for path in sorted(p for p in self._folder.iterdir() if is_nifti_path(p) and not p.name.startswith(".")):
            role = ComboBox(label=path.name, choices=[("—", ""), *[(r, r) for r in ASSIGNABLE_ROLES]], value="")
            role.value = earlier.get(path.name, "")
            self._choices.append(role)
        self._title.value = f"<b>{self._folder.name}</b>: which file is which? (remembered for this folder)"
        self.visible = self.offered = True

    def withdraw(self, folder: Path) -> None:
        """Hide the choices once another folder is opened (they were for the folder offered)."""
        if self._folder is not None and Path(folder).resolve() != self._folder.resolve():
            self.visible = self.offered = False

    def set_role(self, file_name: str, role: str) -> None:
        """Choose `role` for `file_name` as a user would."""
        next(combo for combo in self._choices if combo.label == file_name).value = role

    def apply(self) -> Any:
        """Remember the choices for the folder and open it; returns the loading worker (None on bad choices)."""
        if self._folder is None:
            return None
        try:
            assign_roles(self._folder, {combo.label: combo.value for combo in self._choices})
        except LesionSegError as err:
            show_error(str(err))
            return None
        self.visible = self.offered = False
        return self._open_folder(self._folder)
