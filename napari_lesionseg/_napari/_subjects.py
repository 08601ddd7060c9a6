"""Which subject an image layer belongs to, so that no dock mixes two patients' scans.

A subject is the folder its files were read from (the reader takes one subject per folder, whatever
its files are named); layers made in the viewer, with no file, belong to none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from napari.layers import Image, Layer

from napari_lesionseg._napari._layers import is_result
from napari_lesionseg._napari.metadata import (
    modality_from_layer_metadata,
    path_from_layer_metadata,
    subject_from_layer_metadata,
)
from napari_lesionseg.data.naming import subject_of
from napari_lesionseg.engine.checkpoints import CheckpointInfo
from napari_lesionseg.engine.choice import default_checkpoint
from napari_lesionseg.errors import InvalidInputError

if TYPE_CHECKING:
    import napari

__all__ = [
    "check_one_subject", "default_for_newest_subject", "image_layers", "layer_subject", "newest_subject",
    "subject_name_of",
]  # fmt: skip


def image_layers(viewer: napari.viewer.Viewer) -> list[Image]:
    """Image layers that can be inputs (not the results this plugin computed)."""
    return [layer for layer in viewer.layers if isinstance(layer, Image) and not is_result(layer)]


def layer_subject(layer: Layer) -> Path | None:
    """The folder of the subject a layer belongs to (its file's, or the one recorded for a run's or a corrected mask)."""
    return subject_from_layer_metadata(layer.metadata)


def subject_name_of(layer: Layer) -> str:
    """The subject name of a layer's file (``sub-01`` of ``sub-01_FLAIR.nii.gz``), else its folder's, else the layer's."""
    path = path_from_layer_metadata(layer.metadata)
    parsed = subject_of(path) if path is not None else None
    return parsed[1] if parsed is not None else (path.resolve().parent.name if path is not None else layer.name)


def newest_subject(viewer: napari.viewer.Viewer) -> Path | None:
    """The subject of the image layer last in the layer list (the one opened last, unless reordered)."""
    subjects = [subject for layer in image_layers(viewer) if (subject := layer_subject(layer)) is not None]
    return subjects[-1] if subjects else None


def check_one_subject(chosen: dict[str, Layer]) -> None:
    """Refuse inputs read from two subjects' folders: the network would segment a patient made of two."""
    subjects: dict[Path, list[str]] = {}
    for modality, layer in chosen.items():
        if (subject := layer_subject(layer)) is not None:
            subjects.setdefault(subject, []).append(modality)
    if len(subjects) > 1:
        listed = "; ".join(f"{', '.join(names)} from {folder.name} ({folder.parent})" for folder, names in subjects.items())
        raise InvalidInputError(
            f"The inputs come from {len(subjects)} subjects ({listed}): pick one subject's layer for every modality."
        )


def default_for_newest_subject(viewer: napari.viewer.Viewer, infos: Sequence[CheckpointInfo]) -> CheckpointInfo | None:
    """`choice.default_checkpoint` for the modalities of the subject opened last (and layers of no subject)."""
    subject = newest_subject(viewer)
    layers = [layer for layer in image_layers(viewer) if layer_subject(layer) in (None, subject)]
    modalities = [modality_from_layer_metadata(layer.metadata) or layer.name for layer in layers]
    named = [subject_name_of(layer) for layer in layers if layer_subject(layer) is not None]
    return default_checkpoint(infos, modalities=modalities, subject=named[-1] if named else None)
