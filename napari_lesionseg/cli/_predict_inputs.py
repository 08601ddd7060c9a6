"""Which subjects a `lesionseg predict` command line names: folders, folders of subjects, or modality files.

Nothing is read but names here: each subject's loading is deferred (`Planned.load`), so a shard
reads only its own subjects, and every output can be checked against every input first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_lesionseg.errors import InvalidInputError

if TYPE_CHECKING:
    from napari_lesionseg.data.subject import Subject

__all__ = ["Planned", "subject_loaders"]


@dataclass(frozen=True)
class Planned:
    """A subject of the run, known before anything is loaded."""

    name: str
    folder: Path
    inputs: tuple[Path, ...]
    load: Any


def subject_loaders(inputs: list[str]) -> list[Planned]:
    """The run's subjects with their input files; loading is deferred so that a shard reads only its own subjects."""
    from napari_lesionseg.data.naming import find_subject_files, is_nifti_path, subject_name
    from napari_lesionseg.data.subject import load_subject

    folders = [Path(i) for i in inputs if Path(i).is_dir()]
    if folders and len(folders) != len(inputs):
        missing = [i for i in inputs if not Path(i).exists() and "=" not in i]
        if missing:
            raise InvalidInputError(f"{missing[0]}: no such file or folder")
        raise InvalidInputError("give either folders (subjects or folders of subjects) or modality files, not both")
    if not folders:
        files = [_named_file(i, is_nifti_path) for i in inputs]
        load = functools.partial(_subject_from_files, files)
        return [Planned(_files_subject_name(files), files[0][1].parent, tuple(p for _, p in files), load)]
    planned = []
    for folder in (s for given in folders for s in _subject_folders(given)):
        images, mask = find_subject_files(folder)
        paths = (*images.values(), *([mask] if mask is not None else []))
        load = functools.partial(load_subject, folder)
        planned.append(Planned(subject_name(folder, list(images.values())), folder, paths, load))
    return planned


def _subject_folders(folder: Path) -> list[Path]:
    """`folder` itself when it holds modality files, else its subfolders that do."""
    from napari_lesionseg.data.naming import find_subject_files

    try:
        find_subject_files(folder)
        return [folder]
    except InvalidInputError as err:
        children = [c for c in sorted(folder.iterdir()) if c.is_dir() and not c.name.startswith(".")]
        subjects = [c for c in children if _is_subject(c)]
        if not subjects and _holds_nifti(folder):  # a subject folder with a problem: say that problem
            raise
        if not subjects:
            raise InvalidInputError(f"{folder}: neither a subject folder nor a folder of subject folders ({err})") from None
        return subjects


def _holds_nifti(folder: Path) -> bool:
    from napari_lesionseg.data.naming import is_nifti_path

    return any(is_nifti_path(p) and not p.name.startswith(".") for p in folder.iterdir())


def _is_subject(folder: Path) -> bool:
    from napari_lesionseg.data.naming import find_subject_files

    try:
        find_subject_files(folder)
    except InvalidInputError:
        return False
    return True


def _named_file(text: str, is_nifti: Any) -> tuple[str, Path]:
    """(modality, path) from ``NAME=PATH`` or from a BIDS-like file name."""
    from napari_lesionseg.constants import MODALITIES
    from napari_lesionseg.data.naming import modality_of

    name, sep, path_text = text.partition("=")
    if sep and not Path(text).exists():
        matches = [m for m in MODALITIES if m.casefold() == name.casefold()]
        modality, path = (matches[0] if matches else name), Path(path_text)
    else:
        path = Path(text)
        if not path.exists():
            raise InvalidInputError(f"{path}: no such file or folder")
        modality = modality_of(path)
        if modality is None:
            raise InvalidInputError(
                f"{path}: cannot tell its modality from the name; name it like sub-01_T1w.nii.gz ({', '.join(MODALITIES)}) "
                f"or pass it as MODALITY=PATH, e.g. T1w={path}"
            )
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file (given as {modality})")
    if not path.is_file() or not is_nifti(path):
        raise InvalidInputError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
    return modality, path


def _files_subject_name(files: list[tuple[str, Path]]) -> str:
    from napari_lesionseg.data.naming import nifti_stem

    stem = nifti_stem(files[0][1])
    suffix = f"_{files[0][0]}"
    return stem[: -len(suffix)] if stem.lower().endswith(suffix.lower()) and len(stem) > len(suffix) else stem


def _subject_from_files(files: list[tuple[str, Path]]) -> Subject:
    """A subject made of explicitly given modality files, resampled onto the FLAIR's grid where needed."""
    from napari_lesionseg.constants import MODALITIES
    from napari_lesionseg.data.subject import on_reference_grid
    from napari_lesionseg.data.volumes import load_volume

    modalities = [m for m, _ in files]
    duplicates = sorted({m for m in modalities if modalities.count(m) > 1})
    if duplicates:
        raise InvalidInputError(f"modality {duplicates[0]} is given more than once")
    volumes = {m: load_volume(p) for m, p in files}
    order = [m for m in MODALITIES if m in volumes] + [m for m in volumes if m not in MODALITIES]
    images = {m: volumes[m] for m in order}
    for modality, volume in images.items():
        volume.modality = volume.name = modality
    return on_reference_grid(_files_subject_name(files), Path(files[0][1]).parent, images)
