"""The model and its inputs, as the Inference dock shows them: a checkpoint picked by its beta, one
image layer per modality it takes (matched by the modality each layer was loaded as), and a subject
folder to open as inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, RadioButtons
from napari.layers import Image, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning

from napari_lesionseg._napari._inference_job import check_layers, warnings_as_notifications
from napari_lesionseg._napari._layers import add_subject_layers, is_result
from napari_lesionseg._napari._notify import notify_or_raise
from napari_lesionseg._napari._subjects import (
    check_one_subject,
    default_for_newest_subject,
    image_layers,
    layer_subject,
    newest_subject,
)
from napari_lesionseg._napari._wrapped import wrapped
from napari_lesionseg._napari.metadata import modality_from_layer_metadata
from napari_lesionseg._napari.reader import subject_layer_data
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.catalog import checkpoint_details, checkpoint_labels, inputs_summary, runnable_first
from napari_lesionseg.engine.checkpoints import (
    CheckpointInfo,
    CheckpointMetadata,
    list_checkpoints,
    user_checkpoint_dir,
)
from napari_lesionseg.engine.choice import grouped
from napari_lesionseg.engine.requirements import required_modalities
from napari_lesionseg.errors import CheckpointError, InvalidInputError

if TYPE_CHECKING:
    import napari

__all__ = ["ModelInputs", "check_modalities_match", "checkpoint_layers", "matching_layer"]

#: Minimum width (pixels) of the wrapped text lines, so they do not collapse into a narrow column.
TEXT_WIDTH = 300


def matching_layer(viewer: napari.viewer.Viewer, modality: str, subject: Path | None = None) -> Image | None:
    """The image layer loaded as `modality` (or named so, case-insensitively): of `subject` when given (a layer of
    no known subject will do, one of another subject never: that would mix two patients' scans)."""
    key = modality.casefold()
    for layer in image_layers(viewer):
        loaded_as = modality_from_layer_metadata(layer.metadata) or ""
        owner = layer_subject(layer)
        if key in (layer.name.casefold(), loaded_as.casefold()) and (subject is None or owner in (None, subject)):
            return layer
    return None


def checkpoint_layers(
    viewer: napari.viewer.Viewer, metadata: CheckpointMetadata, subject: Path | None = None
) -> dict[str, Image]:
    """The image layer of each input the checkpoint takes and `subject` (default: the newest) has, in channel order.

    Raises:
        CheckpointError: a required input has no layer (an optional one may lack).
    """
    subject = subject or newest_subject(viewer)
    found = {modality: matching_layer(viewer, modality, subject) for modality in metadata.modalities}
    missing = [m for m in required_modalities(metadata) if found[m] is None]
    if missing:
        own = [layer for layer in image_layers(viewer) if layer_subject(layer) in (None, subject)]
        shown = ", ".join(layer.name for layer in own) or "none"
        raise CheckpointError(
            f"The checkpoint takes {', '.join(metadata.modalities)}, but there is no image layer for "
            f"{', '.join(missing)} (image layers: {shown}). Open the subject's modalities, or start from a "
            "checkpoint trained on the ones you have."
        )
    return {modality: layer for modality, layer in found.items() if layer is not None}


class ModelInputs(Container):
    """Checkpoint selector, its details, and the image layer chosen for each of its modalities."""

    def __init__(self, viewer: napari.viewer.Viewer, status: Callable[[str], None]) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._status = status
        self._checkpoints: dict[str, CheckpointInfo] = {}
        self._pinned = False  # the user chose a checkpoint: keep it; else offer `choice.default_checkpoint`
        self._choosing = False
        self._labels_shown: list[str] = []
        self._checkpoint = RadioButtons(choices=self._checkpoint_choices)
        self._checkpoint_details = Label(value="")
        self._inputs = Container(labels=True)
        self._folder = FileEdit(mode="d", label="Subject folder")
        self._open_folder = PushButton(text="Open folder as inputs")
        self._checkpoint_details.native.setMinimumWidth(TEXT_WIDTH)  # its text is wrapped in code (`_wrapped`)
        self.extend(
            [
                Label(value="<b>Checkpoint</b> (beta: higher favours recall)"),
                self._checkpoint,
                self._checkpoint_details,
                Label(value="<b>Inputs</b> (image layer per modality)"),
                self._inputs,
                Container(labels=True, widgets=[self._folder]),
                self._open_folder,
            ]
        )
        self._checkpoint.changed.connect(self._on_checkpoint_changed)
        self._open_folder.changed.connect(self._on_open_folder)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh_inputs)
        viewer.layers.events.inserted.connect(self._on_layer_added)

    @property
    def checkpoints(self) -> list[CheckpointInfo]:
        """The checkpoints the selector lists, in order."""
        return list(self._checkpoints.values())

    def refresh_checkpoints(self) -> None:
        """Re-read the user's and the bundled checkpoints into the selector (keeps the selection)."""
        with warnings_as_notifications():
            infos = grouped(list_checkpoints())
        self._checkpoints = {str(info.path): info for info in infos}
        if tuple(self._checkpoints) != self._checkpoint.choices:  # rebuilding the buttons makes the dock flicker
            self._choosing = True
            try:
                self._checkpoint.reset_choices()
            finally:
                self._choosing = False
        self._offer_default()
        self._on_checkpoint_changed()

    def _offer_default(self) -> None:
        """Select the default checkpoint for the loaded subject, unless the user pinned one that still exists."""
        if self._pinned and self._checkpoint.value in self._checkpoints:
            return
        default = default_for_newest_subject(self._viewer, self.checkpoints)
        if default is not None and self._checkpoint.value != str(default.path):
            self._choosing = True
            try:
                self._checkpoint.value = str(default.path)
            finally:
                self._choosing = False

    def select(self, name: str) -> None:
        """Select the checkpoint called `name` (file stem), as one click on it would."""
        matches = [path for path, info in self._checkpoints.items() if info.name == name]
        if not matches:
            names = [info.name for info in self.checkpoints]
            raise CheckpointError(f"no checkpoint named {name!r} in the selector; found {names}")
        self._checkpoint.value = matches[0]
        self._pinned = True

    def selected(self) -> CheckpointInfo:
        """The selected checkpoint (`CheckpointError` when there is none)."""
        info = self._checkpoints.get(self._checkpoint.value)
        if info is None:
            raise CheckpointError(
                f"No checkpoint is selected, and none may exist: put one in {user_checkpoint_dir()} "
                "(`lesionseg train`, or the Fine-tune dock) and it will be listed here."
            )
        return info

    def input_layers(self, metadata: CheckpointMetadata) -> dict[str, Image]:
        """The chosen layer of each of the checkpoint's modalities (optional ones when chosen), in its order, checked."""
        if not image_layers(self._viewer):
            raise InvalidInputError(
                "There are no image layers to segment: open a subject first (Subject dock, File > Open, "
                "or 'Open folder as inputs' here)."
            )
        chosen = {combo.label: combo.value for combo in self._inputs if combo.value is not None}
        missing = [modality for modality in required_modalities(metadata) if modality not in chosen]
        if missing:
            raise CheckpointError(
                f"Checkpoint {metadata.name!r} needs the modalities {inputs_summary(metadata)}, but no image "
                f"layer is chosen for {', '.join(missing)} (image layers: "
                f"{', '.join(layer.name for layer in image_layers(self._viewer))}). Open the missing modality and "
                "pick its layer under Inputs, or choose a checkpoint trained on the modalities you have."
            )
        layers = {modality: chosen[modality] for modality in metadata.modalities if modality in chosen}
        check_layers(layers)
        check_modalities_match(layers)
        check_one_subject(layers)
        return layers

    def open_folder(self, folder: str | Path) -> Any:
        """Load a subject folder off the GUI thread and add its modalities as input layers; returns the worker."""
        self._status(f"Loading {Path(folder).name}...")
        return create_worker(
            load_subject, Path(folder), _connect={"returned": self._add_subject, "errored": self._on_load_error}
        )

    def refresh_inputs(self, event: Any = None) -> None:
        """Re-list the image layers in every input box; empty boxes take the matching layer."""
        self._relabel_checkpoints()
        subject = newest_subject(self._viewer)
        for combo in self._inputs:
            combo.reset_choices()
            if combo.value is None:
                combo.value = matching_layer(self._viewer, combo.label, subject)

    def _relabel_checkpoints(self) -> None:
        """Say again what each checkpoint needs once the loaded layers change (rebuilding the buttons flickers, so
        only then)."""
        if [label for label, _ in self._needs_choices()] != self._labels_shown:
            self._choosing = True
            try:
                self._checkpoint.reset_choices()
            finally:
                self._choosing = False

    def _checkpoint_choices(self, widget: Any = None) -> list[tuple[str, str]]:
        """The buttons magicgui draws (what they say is remembered for `_relabel_checkpoints`)."""
        choices = self._needs_choices()
        self._labels_shown = [label for label, _ in choices]
        return choices

    def _needs_choices(self) -> list[tuple[str, str]]:
        """One (label, path) per checkpoint, saying which of its required inputs no layer holds."""
        labels = checkpoint_labels(self.checkpoints)
        loaded = [modality_from_layer_metadata(layer.metadata) or layer.name for layer in image_layers(self._viewer)]
        needs = {str(info.path): missing for info, missing in runnable_first(self.checkpoints, loaded)}
        return [(labels[path] + (f"  (needs {', '.join(needs[path])})" if needs[path] else ""), path) for path in self._checkpoints]

    def _on_checkpoint_changed(self, value: Any = None) -> None:
        if value is not None and not self._choosing:  # a click on a checkpoint pins it
            self._pinned = True
        info = self._checkpoints.get(self._checkpoint.value)
        if info is None:
            self._checkpoint_details.value = wrapped(f"No checkpoints found (user folder: {user_checkpoint_dir()}).")
            self._inputs.clear()
            return
        self._checkpoint_details.value = wrapped(checkpoint_details(info))
        chosen = {combo.label: combo.value for combo in self._inputs}  # the user's picks survive a beta switch
        available = image_layers(self._viewer)
        subject = newest_subject(self._viewer)
        self._inputs.clear()
        for modality in info.metadata.modalities:
            combo = ComboBox(label=modality, choices=self._image_choices, nullable=True, name=f"input_{modality}")
            previous = chosen.get(modality)
            in_viewer = any(previous is layer for layer in available)
            combo.value = previous if in_viewer else matching_layer(self._viewer, modality, subject)
            self._inputs.append(combo)

    def _on_layer_added(self, event: Any = None) -> None:
        """A subject opened: its layers become the inputs, and its default checkpoint is offered (unless one is pinned)."""
        added = getattr(event, "value", None)
        subject = layer_subject(added) if isinstance(added, Image) and not is_result(added) else None
        if subject is not None:
            for combo in self._inputs:
                if combo.value is None or layer_subject(combo.value) not in (None, subject):
                    combo.value = matching_layer(self._viewer, combo.label, subject)
        if not self._pinned and self._checkpoints:
            self._offer_default()
            self._on_checkpoint_changed()

    def _image_choices(self, widget: Any = None) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in image_layers(self._viewer)]

    def _on_open_folder(self) -> None:
        folder = Path(self._folder.value)
        if not folder.is_dir():
            show_error(f"{folder} is not a folder: choose a subject folder holding <sub>_FLAIR.nii.gz etc.")
            return
        self.open_folder(folder)

    def _add_subject(self, subject: Any) -> None:
        _, skipped = add_subject_layers(self._viewer, subject_layer_data(subject))
        if skipped:
            show_info(f"{subject.name}: already open, not added again: {', '.join(skipped)}")
        self.refresh_inputs()
        self._status(f"{subject.name}: {', '.join(subject.modalities)} loaded as inputs.")

    def _on_load_error(self, err: Exception) -> None:
        self._status("Could not open the subject (see the notification).")
        notify_or_raise(err)


def check_modalities_match(chosen: dict[str, Layer]) -> None:
    """Refuse a layer loaded as one modality in another's box (FLAIR and T2w swapped give a plausible, wrong mask).

    A layer of unknown origin (no recorded modality) is taken as chosen, with a warning naming it.
    """
    for modality, layer in chosen.items():
        loaded_as = modality_from_layer_metadata(layer.metadata)
        if loaded_as is not None and loaded_as.casefold() != modality.casefold():
            raise InvalidInputError(
                f"Layer {layer.name!r} was loaded as {loaded_as} but is chosen as the {modality} input: pick the "
                f"{modality} layer there (the network would read a {loaded_as} image as {modality})."
            )
        if loaded_as is None and layer.name.casefold() != modality.casefold():
            show_warning(f"Layer {layer.name!r} has no recorded modality: it is used as the {modality} input.")
