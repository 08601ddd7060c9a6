"""What the Fine-tune dock trains on: the image layers the checkpoint takes, a copy of the corrected mask (checked
against them), the mask grid's spacing, the subject, and the run mask the user started correcting from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Labels

from napari_lesionseg._napari._finetune_report import layer_spacing
from napari_lesionseg._napari._finetune_settings import FineTuneSettings
from napari_lesionseg._napari._model_inputs import checkpoint_layers, matching_layer
from napari_lesionseg._napari._subjects import image_layers, layer_subject, newest_subject, subject_name_of
from napari_lesionseg._napari.metadata import started_from_layer_metadata
from napari_lesionseg.engine.checkpoints import CheckpointInfo
from napari_lesionseg.engine.requirements import required_modalities
from napari_lesionseg.errors import CheckpointError, InvalidInputError, LesionSegError
from napari_lesionseg.training.corrections import FineTuneRequest, check_correction

if TYPE_CHECKING:
    import napari

__all__ = ["fine_tune_request", "images_text"]


def fine_tune_request(
    viewer: napari.viewer.Viewer,
    info: CheckpointInfo | None,
    mask_layer: Labels | None,
    settings: FineTuneSettings,
    *,
    folders: Sequence[Path],
    check_folders: Sequence[Path],
) -> FineTuneRequest:
    """Fine-tuning `info` on `mask_layer` and the viewer's images, checked (raises a `LesionSegError` naming the
    problem)."""
    if info is None:
        raise CheckpointError("No checkpoint to start from: train one (`lesionseg train`) or install the bundled ones.")
    if mask_layer is None:
        raise InvalidInputError(
            "No corrected mask: create one in the Lesion review dock ('New from prediction'), correct it, "
            "then choose it here."
        )
    images = checkpoint_layers(viewer, info.metadata, _mask_subject(viewer, mask_layer))
    first = next(iter(images.values()))
    mask = np.array(mask_layer.data, copy=True)  # the user may keep editing while training runs
    spacing = layer_spacing(mask_layer, first)
    check_correction({m: layer.data for m, layer in images.items()}, mask, mask_layer.name, spacing)
    return FineTuneRequest(
        checkpoint=info.path,
        images={m: np.asarray(layer.data) for m, layer in images.items()},
        mask=mask,
        spacing=spacing,
        predicted=started_from_layer_metadata(mask_layer.metadata, mask.shape),  # what the user changed
        subject_name=subject_name_of(first),  # the name the docks match a tuned checkpoint by
        mask_name=mask_layer.name,
        folders=tuple(folders),
        check_folders=tuple(check_folders),
        **settings.values(),
    )


def _mask_subject(viewer: napari.viewer.Viewer, mask_layer: Labels) -> Path | None:
    """The subject whose scans the mask is trained with: its file's, else the one subject open on its grid.

    A mask made from a prediction has no file, and two subjects on one grid (MNI-space scans, samples)
    would let it train with the other patient's scans.
    """
    own = layer_subject(mask_layer)
    if own is not None:
        return own
    shape = np.shape(mask_layer.data)
    on_grid = {s for layer in image_layers(viewer) if np.shape(layer.data) == shape and (s := layer_subject(layer))}
    if len(on_grid) > 1:
        names = ", ".join(sorted(folder.name for folder in on_grid))
        raise InvalidInputError(
            f"The corrected mask {mask_layer.name!r} could belong to any of the subjects open on its grid ({names}): "
            "close the others (or save the mask beside its subject and open it from there) before fine-tuning."
        )
    return next(iter(on_grid), None)


def images_text(viewer: napari.viewer.Viewer, info: CheckpointInfo | None, mask_layer: Labels | None = None) -> str:
    """Which image layers `info` would train on with `mask_layer` (or what is missing), for the dock's 'Images' line.

    The scans are the mask's subject's, as `fine_tune_request` takes them; without a mask, the newest subject's.
    """
    if info is None:
        return "Images: choose a checkpoint"
    try:
        subject = _mask_subject(viewer, mask_layer) if mask_layer is not None else None
    except InvalidInputError:
        return "Images: the corrected mask could belong to more than one open subject"
    try:
        images = checkpoint_layers(viewer, info.metadata, subject)
    except LesionSegError:
        subject = subject or newest_subject(viewer)
        missing = [m for m in required_modalities(info.metadata) if matching_layer(viewer, m, subject) is None]
        return f"Images: missing {', '.join(missing)} (open the subject's modalities)"
    return "Images: " + ", ".join(layer.name for layer in images.values())
