"""napari reader: NIfTI files and MS subject folders -> Image / Labels layers on scanner coordinates.

A subject folder (see `io.find_subject_files`) opens as one Image layer per modality, named by
modality, in `constants.MODALITIES` order, plus the reference mask as a Labels layer named
``"reference mask"``. Only the FLAIR (or, without a FLAIR, the first modality) is visible; the other
modalities are loaded hidden, so toggling one shows that channel instead of a blend. A single file
opens as an Image, or as Labels when its name ends with a mask suffix (``_label-lesion_mask``,
``_mask``, ``_dseg``); label values are kept as they are.

Layers carry ``scale = geometry.spacing``, ``translate = geometry.napari_translate`` and
``metadata = {"lesionseg": {"geometry", "modality", "path"}}``, so the writer can put edits back
on the source grid.

Doubtful input (a `LesionSegWarning`, e.g. a zero voxel size or disagreeing qform/sform) becomes a
napari warning notification with the engine's message. Bad input (`LesionSegError`) is reported
as a napari error notification carrying exactly the engine's message, and the reader returns napari's "no layers" sentinel ``[(None,)]``: napari
would otherwise wrap the message in a generic "Tried opening with ..., but failed" error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_lesionseg._napari._layers import REFERENCE_COLOR, single_color_labels
from napari_lesionseg._napari.metadata import layer_metadata
from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.intensity import foreground_mask
from napari_lesionseg.data.naming import is_nifti_path, nifti_stem
from napari_lesionseg.data.subject import Subject, load_subject
from napari_lesionseg.data.volumes import Volume, load_volume
from napari_lesionseg.errors import LesionSegError, LesionSegWarning

__all__ = [
    "LABEL_SUFFIXES",
    "napari_get_reader",
    "read_paths",
    "robust_contrast_limits",
    "subject_layer_data",
    "volume_layer_data",
]

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: File name endings (before .nii/.nii.gz, case-insensitive) that open as a Labels layer.
LABEL_SUFFIXES: tuple[str, ...] = (MASK_SUFFIX.lower(), "_mask", "_dseg")
#: Percentiles of the non-background voxels used as an image layer's contrast limits.
_CONTRAST_PERCENTILES = (2.0, 99.8)
_CONTRAST_SAMPLE = 1_000_000


def napari_get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerDataTuple]] | None:
    """Return `read_paths` for NIfTI files and for folders that hold NIfTI files, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if paths and all(_is_nifti_file(p) or _is_folder_with_nifti(p) for p in paths):
        return read_paths
    return None


def read_paths(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Layer data for each path (file or subject folder); bad input becomes an error notification."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LesionSegWarning)
        try:
            layers = [layer for p in paths for layer in _read_one(Path(p))]
        except LesionSegError as err:
            error, layers = str(err), [(None,)]
    _notify(caught)
    if error is not None:
        from napari.utils.notifications import show_error

        show_error(error)
    return layers  # type: ignore[return-value]


def _notify(caught: list[warnings.WarningMessage]) -> None:
    """Our warnings as napari notifications; any other warning goes on as usual."""
    from napari.utils.notifications import show_warning

    for warning in caught:
        if issubclass(warning.category, LesionSegWarning):
            show_warning(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def subject_layer_data(subject: Subject) -> list[LayerDataTuple]:
    """Image layers of a subject's modalities (only the reference one visible) and its mask as Labels.

    What loading changed (`Subject.notes`: volumes resampled onto the FLAIR grid) is shown as an
    info notification, for the reader and every dock that opens a subject.
    """
    if subject.notes:
        from napari.utils.notifications import show_info

        for note in subject.notes:
            show_info(note)
    layers = [
        volume_layer_data(volume, visible=modality == subject.reference, acquired=_acquired(subject, modality))
        for modality, volume in subject.images.items()
    ]
    if subject.mask is not None:
        layers.append(volume_layer_data(subject.mask, layer_type="labels", name="reference mask"))
    return layers


def volume_layer_data(
    volume: Volume, *, layer_type: str = "image", visible: bool = True, name: str | None = None,
    acquired: Geometry | None = None,
) -> LayerDataTuple:  # fmt: skip
    """A napari layer data tuple showing `volume` at its scanner position.

    Args:
        volume: the canonical volume.
        layer_type: ``"image"`` or ``"labels"``.
        visible: initial visibility.
        name: layer name; the volume's name when None.
        acquired: the grid the volume was read on, when it was resampled onto the reference's.
    """
    kwargs: dict[str, Any] = {
        "name": name or volume.name,
        "scale": volume.geometry.spacing,
        "translate": volume.geometry.napari_translate,
        "metadata": layer_metadata(volume.geometry, modality=volume.modality, path=volume.path, acquired=acquired),
        "visible": visible,
    }
    if layer_type == "image":
        kwargs.update(
            contrast_limits=robust_contrast_limits(volume.data),
            colormap="gray",
            blending="translucent_no_depth",
        )
    elif layer_type == "labels":
        kwargs.update(opacity=0.6, blending="translucent", **single_color_labels(REFERENCE_COLOR))
    else:
        raise ValueError(f"layer_type must be 'image' or 'labels', not {layer_type!r}")
    return volume.data, kwargs, layer_type


def robust_contrast_limits(data: np.ndarray) -> tuple[float, float]:
    """A window on the head: the [2, 99.8] percentiles inside its foreground (a subsampled grid).

    Percentiles over the whole field of view start the window at background level and wash the brain
    out; inside the head the window spans tissue, so lesions stand out on FLAIR.
    """
    data = np.asarray(data)
    step = max(1, round((data.size / _CONTRAST_SAMPLE) ** (1.0 / 3.0))) if data.ndim == 3 else 1
    sample = data[::step, ::step, ::step] if data.ndim == 3 else data
    inside = sample[foreground_mask(sample)] if sample.ndim == 3 and sample.size > 1 else sample.ravel()
    values = inside if inside.size else sample.ravel()
    low, high = (float(v) for v in np.percentile(values, _CONTRAST_PERCENTILES))
    return (low, high) if high > low else (low, low + 1.0)


def _read_one(path: Path) -> list[LayerDataTuple]:
    if path.is_dir():
        return subject_layer_data(load_subject(path))
    if _is_label_name(path):
        return [volume_layer_data(load_volume(path, kind="labels"), layer_type="labels")]
    volume = load_volume(path, kind="image")
    # A file named by its modality opens as that modality: named so (the Inference dock's boxes find it), and
    # only the FLAIR shown, so that files opened one by one do not hide each other.
    if volume.modality is not None:
        return [volume_layer_data(volume, name=volume.modality, visible=volume.modality == "FLAIR")]
    return [volume_layer_data(volume)]


def _is_label_name(path: Path) -> bool:
    return nifti_stem(path).lower().endswith(LABEL_SUFFIXES)


def _is_nifti_file(path: str | Path) -> bool:
    path = Path(path)
    return is_nifti_path(path) and not path.is_dir()


def _is_folder_with_nifti(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and any(is_nifti_path(p) and not p.name.startswith(".") for p in path.iterdir())


def _acquired(subject: Subject, modality: str) -> Geometry | None:
    source = subject.sources.get(modality)
    return source.geometry if source is not None else None
