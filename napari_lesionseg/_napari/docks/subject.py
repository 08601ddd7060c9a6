"""The Subject dock: open a subject (sample or folder), see each volume's geometry, save a layer to NIfTI.

Thin by design: loading and saving are `napari_lesionseg.data.volumes` calls; loading runs in a thread worker
so a 1 mm subject does not freeze the viewer; every user-fixable problem becomes a notification.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Table
from napari.layers import Image, Labels, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from napari_lesionseg._napari._assign_panel import AssignPanel
from napari_lesionseg._napari._layers import add_subject_layers, check_save_as
from napari_lesionseg._napari._notify import notify_or_raise
from napari_lesionseg._napari._orientation import show_radiological
from napari_lesionseg._napari._scroll import scroll_contents
from napari_lesionseg._napari.metadata import (
    acquired_from_layer_metadata,
    geometry_from_layer_metadata,
    path_from_layer_metadata,
)
from napari_lesionseg._napari.reader import subject_layer_data
from napari_lesionseg.data.samples import sample_subjects
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.data.volumes import save_volume
from napari_lesionseg.errors import LesionSegError

if TYPE_CHECKING:
    import napari

__all__ = ["SubjectWidget"]

_TABLE_COLUMNS = ("layer", "shape (S, P, L)", "spacing (mm)", "file axes", "file")


class SubjectWidget(Container):
    """Open a subject, list its volumes' geometry, save a layer back onto its source grid."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        show_radiological(viewer)
        self._viewer = viewer
        self._worker: Any = None

        self._sample = ComboBox(label="Sample subject", choices=self._sample_choices())
        self._open_sample = PushButton(text="Open sample subject")
        self._folder = FileEdit(mode="d", label="Subject folder")
        self._open_folder = PushButton(text="Open subject folder")
        self._status = Label(value="")
        self._table = Table(value=_table_value([]))
        self._table.read_only = True
        self._save_layer = ComboBox(label="Layer to save", choices=self._savable_layers)
        self._save_path = FileEdit(mode="w", label="Save as", filter="*.nii.gz *.nii")
        self._save = PushButton(text="Save layer as NIfTI")

        self._assign = AssignPanel(self.open_subject)
        self.extend(
            [
                Label(value="<b>Subject</b>"),
                self._sample,
                self._open_sample,
                self._folder,
                self._open_folder,
                self._status,
                self._assign,
                Label(value="Volumes (canonical S, P, L orientation)"),
                self._table,
                self._save_layer,
                self._save_path,
                self._save,
            ]
        )
        self._open_sample.changed.connect(self._on_open_sample)
        self._open_folder.changed.connect(self._on_open_folder)
        self._save.changed.connect(self._on_save)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._refresh)
        self._refresh()
        scroll_contents(self)  # fits a laptop screen

    # --- actions ------------------------------------------------------------------------------

    def open_subject(self, folder: str | Path) -> Any:
        """Load a subject folder off the GUI thread and add its layers; returns the worker."""
        folder = Path(folder)
        self._assign.withdraw(folder)
        self._status.value = f"Loading {folder.name}..."
        # Connecting `errored` here (not after creation) stops superqt from re-raising bad input as a traceback.
        def failed(err: Exception) -> None:
            self._report_error(err)
            if "no recognisable modality" in str(err):  # scanner-style names: let the user say which is which
                self._assign.offer(folder)

        connections = {"returned": self._add_subject, "errored": failed, "finished": self._clear_worker}
        self._worker = create_worker(load_subject, folder, _connect=connections)
        return self._worker

    def save_layer(self, layer: Layer, path: str | Path) -> Path:
        """Write `layer` to NIfTI on the grid it is shown on (its file's; the FLAIR's for a resampled modality), atomically."""
        geometry = geometry_from_layer_metadata(layer.metadata)
        if geometry is None:
            raise LesionSegError(
                f"Layer {layer.name!r} has no source geometry (it was not opened from a NIfTI file by this "
                "plugin): use File > Save Selected Layers, which writes it with the layer's scale."
            )
        path = Path(path)
        if path.is_dir():  # an empty "Save as" box reads as the working folder
            raise LesionSegError(f"{path}: is a folder; choose a file to save {layer.name!r} to (Save as).")
        check_save_as(self._viewer, path)
        return save_volume(layer.data, geometry, path)

    # --- slots --------------------------------------------------------------------------------

    def _on_open_sample(self) -> None:
        if self._sample.value is None:
            show_error("No sample subjects are installed: make some with `lesionseg sample OUT_DIR`.")
            return
        self.open_subject(self._sample.value)

    def _on_open_folder(self) -> None:
        folder = Path(self._folder.value)
        if not folder.is_dir():
            show_error(f"{folder} is not a folder: choose a subject folder holding <sub>_FLAIR.nii.gz etc.")
            return
        self.open_subject(folder)

    def _on_save(self) -> None:
        layer = self._save_layer.value
        if layer is None:
            show_error("There is no layer to save: open a subject first.")
            return
        try:
            written = self.save_layer(layer, self._save_path.value)
        except LesionSegError as err:
            show_error(str(err))
            return
        show_info(f"Saved {layer.name!r} to {written}")

    def _add_subject(self, subject: Any) -> None:
        _, skipped = add_subject_layers(self._viewer, subject_layer_data(subject))
        if skipped:
            show_info(f"{subject.name}: already open, not added again: {', '.join(skipped)}")
        self._status.value = f"{subject.name}: {', '.join(subject.modalities)}" + (
            " + reference mask" if subject.mask is not None else ""
        )

    def _report_error(self, err: Exception) -> None:
        self._status.value = "Could not open the subject (see the notification)."
        notify_or_raise(err)

    def _clear_worker(self) -> None:
        self._worker = None

    @property
    def busy(self) -> bool:
        """Whether a subject is being loaded."""
        return self._worker is not None

    def _refresh(self, event: Any = None) -> None:
        self._table.value = _table_value([self._row(layer) for layer in self._geometry_layers()])
        self._save_layer.reset_choices()

    # --- helpers ------------------------------------------------------------------------------

    def _geometry_layers(self) -> list[Layer]:
        return [layer for layer in self._viewer.layers if geometry_from_layer_metadata(layer.metadata) is not None]

    def _savable_layers(self, widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, (Image, Labels))]

    @staticmethod
    def _row(layer: Layer) -> list[str]:
        geometry = geometry_from_layer_metadata(layer.metadata)
        path = path_from_layer_metadata(layer.metadata)
        acquired = acquired_from_layer_metadata(layer.metadata)  # resampled onto the FLAIR's grid on opening
        file = Path(path).name if path else ""
        if acquired is not None:
            shape, spacing = " x ".join(map(str, acquired.shape)), " x ".join(f"{s:.3g}" for s in acquired.spacing)
            file = f"{file} (resampled from {shape} at {spacing} mm)"
        return [
            layer.name,
            " x ".join(str(n) for n in geometry.shape),
            " x ".join(f"{s:.3g}" for s in geometry.spacing),
            "".join(nib.aff2axcodes(geometry.affine)),
            file,
        ]

    @staticmethod
    def _sample_choices(widget: Any = None) -> list[tuple[str, str]]:
        try:
            return [(folder.name, str(folder)) for folder in sample_subjects()]
        except LesionSegError:
            return []


def _table_value(rows: list[list[str]]) -> dict[str, list]:
    """magicgui's "split" table format (a plain dict of lists would be read as columns)."""
    return {"data": rows, "index": list(range(len(rows))), "columns": list(_TABLE_COLUMNS)}
