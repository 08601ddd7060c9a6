"""The Lesion review dock's corrected mask: choose, create from the prediction, restore an autosave, save;
every edit autosaved beside the subject (`_autosave.MaskAutosaver`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QApplication

from napari_lesionseg._napari._autosave import MaskAutosaver
from napari_lesionseg._napari._corrected_masks import CorrectedMasks, no_grid_message, source_path
from napari_lesionseg._napari._layers import is_result
from napari_lesionseg._napari._row import row
from napari_lesionseg._napari._wrapped import wrapped

if TYPE_CHECKING:
    import napari

    from napari_lesionseg.evaluation.review import Review

__all__ = ["CorrectionPanel"]


class CorrectionPanel(Container):
    """The corrected mask layer and its autosave; `on_edit` is called after each brush stroke on it."""

    def __init__(
        self, viewer: napari.viewer.Viewer, *, excluded: Callable[[], Labels | None], on_edit: Callable[[], Any]
    ) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._excluded = excluded  # the review's overlay: never a mask to correct
        self._on_edit = on_edit
        self._painted: Labels | None = None
        self._offered: set[Path] = set()
        self.masks = CorrectedMasks(viewer)
        self.autosaver = MaskAutosaver(
            on_saved=self._on_autosaved, on_error=self._on_autosave_error, parent=self.native
        )
        self.layer_choice = ComboBox(choices=self._correctable_layers, nullable=True)
        self._new = PushButton(text="New from prediction")
        self.restore_button = PushButton(text="Restore autosave")
        self._save_path = FileEdit(mode="w", filter="*.nii.gz *.nii")
        self._save = PushButton(text="Save corrected mask (NIfTI, input grid)")
        self.status = Label(value="Autosave: no corrected mask yet")  # its text is wrapped in code (`_wrapped`)
        self.extend(
            [
                row(Label(value="Corrected mask"), self.layer_choice),
                row(self._new, self.restore_button),
                row(Label(value="Save as"), self._save_path),
                self._save,
                self.status,
            ]
        )
        self.layer_choice.changed.connect(self._on_layer_changed)
        self.restore_button.changed.connect(self.restore)
        self._save.changed.connect(lambda: self.save())
        # Closing napari quits the application: write edits still waiting for the autosave timer.
        QApplication.instance().aboutToQuit.connect(self.autosaver.flush)

    @property
    def layer(self) -> Labels | None:
        """The corrected mask being edited, if any."""
        return self.layer_choice.value

    def connect_new(self, prediction: Callable[[], Labels | None]) -> None:
        """'New from prediction' copies the layer `prediction()` returns."""
        self._new.changed.connect(lambda: self.new_from(prediction()))

    def new_from(self, prediction: Labels | None) -> Labels | None:
        """Add a corrected mask layer initialised from `prediction`, select it and return it."""
        layer = self.masks.new_from(prediction)
        if layer is not None:
            self.layer_choice.value = layer
        return layer

    def restore(self) -> Labels | None:
        """Add the subject's autosaved corrected mask as a layer, select it and return it."""
        layer = self.masks.restore()
        if layer is not None:
            self.layer_choice.value = layer
        return layer

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the corrected mask to `path` (default: the Save-as field, else the autosave file)."""
        return self.masks.save(self.layer, path if path is not None else self._save_path.value)

    def offer_autosave(self) -> None:
        """Say once per file when the open subject has autosaved corrections (not this session's own)."""
        found = self.masks.autosave_on_disk()
        self.restore_button.enabled = found is not None
        current = self.autosaver.target.path if self.autosaver.target is not None else None
        if found is None or found[0] in self._offered or found[0] == current:
            return
        self._offered.add(found[0])
        if not any(source_path(layer) == found[0] for layer in self._viewer.layers):
            show_info(
                f"Found autosaved corrections for this subject ({found[0]}): click 'Restore autosave' in the "
                "Lesion review dock to continue from them."
            )

    def editable_on(self, review: Review | None) -> Labels | None:
        """The corrected mask, if there is one on `review`'s grid (else a notification says what to do)."""
        layer = self.layer
        if layer is None:
            show_error("No corrected mask: click 'New from prediction' (or restore an autosave) first.")
            return None
        if review is None:
            show_error("Update the review first.")
            return None
        if np.shape(layer.data) != review.voxel_map.shape:
            show_error(
                f"The corrected mask {layer.name!r} has shape {np.shape(layer.data)} but the reviewed masks have "
                f"{review.voxel_map.shape}: choose a corrected mask on the same grid."
            )
            return None
        return layer

    def forget(self, layer: Labels) -> None:
        """`layer` left the viewer: stop autosaving it."""
        if layer is self.autosaver.layer:
            self.autosaver.watch(None, None)

    def _correctable_layers(self, widget: Any = None) -> list[tuple[str, Labels]]:
        """Labels layers that may be edited: no computed result (a run's mask, the overlay), no reference file."""
        reference_files = set(self.masks.reference_files())
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Labels) and layer is not self._excluded()
            and not is_result(layer) and source_path(layer) not in reference_files
        ]  # fmt: skip

    def _on_layer_changed(self, layer: Labels | None) -> None:
        if self._painted is not None:
            self._painted.events.paint.disconnect(self._edited)
        self._painted = layer
        if layer is not None:  # the lesion table's 'corrected' column follows the user's brush
            layer.events.paint.connect(self._edited)
        target = self.masks.autosave_target(layer) if layer is not None else None
        self.autosaver.watch(layer, target)
        if layer is None:
            self.status.value = wrapped("Autosave: no corrected mask selected")
        elif target is None:
            self.status.value = wrapped(f"Autosave off: {no_grid_message(layer)}")
        else:
            self.status.value = wrapped(f"Autosave to {target.path}")
        self._on_edit()

    def _edited(self, event: Any = None) -> None:
        self._on_edit()

    def _on_autosaved(self, path: Path) -> None:
        self.status.value = wrapped(f"Autosaved to {path}")

    def _on_autosave_error(self, err: Exception) -> None:
        self.status.value = wrapped("Autosave failed (see the notification); edits are kept in the layer")
        show_error(f"Could not autosave the corrected mask: {err}")

