"""A subject: its co-registered modalities on the reference (FLAIR) grid and its reference mask.

Example:
    >>> subject = load_subject("data/sub-01")                  # doctest: +SKIP
    >>> x = subject.stack(("FLAIR", "T1w", "T2w", "PDw"))      # (4, Z, Y, X) float32  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.naming import find_subject_files, subject_name
from napari_lesionseg.data.resample import resample_volume
from napari_lesionseg.data.volumes import Volume, load_volume
from napari_lesionseg.errors import InvalidInputError

__all__ = ["Subject", "load_subject"]


@dataclass(eq=False)
class Subject:
    """One subject's co-registered modalities (in `constants.MODALITIES` order) and reference mask."""

    name: str
    folder: Path
    images: dict[str, Volume]
    mask: Volume | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        if not self.images:
            raise InvalidInputError(f"Subject {self.name!r} ({self.folder}) has no images.")
        if not self.reference:
            self.reference = "FLAIR" if "FLAIR" in self.images else next(iter(self.images))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities present, in `constants.MODALITIES` order."""
        return tuple(self.images)

    @property
    def geometry(self) -> Geometry:
        """The subject's grid: the FLAIR's (or the first modality's when there is no FLAIR)."""
        return self.images[self.reference].geometry

    def stack(self, modalities: Sequence[str] | None = None) -> np.ndarray:
        """Raw (not normalised) channels as one ``(C, Z, Y, X)`` float32 array, in the given order.

        Args:
            modalities: channel order (e.g. a checkpoint's); all present modalities when None.
        """
        modalities = tuple(modalities) if modalities is not None else self.modalities
        missing = [m for m in modalities if m not in self.images]
        if missing:
            raise InvalidInputError(
                f"Subject {self.name!r} ({self.folder}) lacks {', '.join(missing)}: found "
                f"{', '.join(self.modalities)}, expected {', '.join(modalities)}. Add the missing files "
                f"(e.g. {self.name}_{missing[0]}.nii.gz) or use a model trained on the modalities present."
            )
        return np.stack([self.images[m].data.astype(np.float32, copy=False) for m in modalities])


def load_subject(folder: str | Path, *, resample: bool = False) -> Subject:
    """Read a subject folder: every modality as a canonical float32 `Volume`, plus the reference mask.

    Args:
        folder: the subject folder (see `find_subject_files`).
        resample: resample modalities and mask that are not on the FLAIR grid onto it (linear for
            images, nearest for the mask); a resampled volume takes the FLAIR's geometry, so saving
            it writes onto the FLAIR grid. When False such a mismatch raises `InvalidInputError`.
    """
    folder = Path(folder)
    image_paths, mask_path = find_subject_files(folder)
    images = {}
    for modality, path in image_paths.items():
        volume = load_volume(path, kind="image")
        volume.name = volume.modality = modality
        images[modality] = volume
    reference = images["FLAIR"] if "FLAIR" in images else next(iter(images.values()))
    for modality, volume in images.items():
        images[modality] = _on_reference_grid(volume, reference, resample=resample, kind="image")
    mask = None
    if mask_path is not None:
        mask = load_volume(mask_path, kind="mask")
        mask.name = "reference mask"
        mask = _on_reference_grid(mask, reference, resample=resample, kind="mask")
    name = subject_name(folder, [*image_paths.values()])
    return Subject(name, folder, images, mask, reference=reference.modality or "")


def _on_reference_grid(volume: Volume, reference: Volume, *, resample: bool, kind: Literal["image", "mask"]) -> Volume:
    if volume is reference or volume.geometry.same_grid(reference.geometry):
        return volume
    if not resample:
        raise InvalidInputError(_grid_mismatch_message(volume, reference))
    return resample_volume(volume, reference.geometry, kind=kind)


def _grid_mismatch_message(volume: Volume, reference: Volume) -> str:
    what = "reference mask" if volume.modality is None else volume.modality
    return (
        f"{volume.path}: the {what} is not on the grid of the {reference.modality} {reference.path} "
        f"({what}: {volume.geometry.describe()}; {reference.modality}: {reference.geometry.describe()}). "
        "All modalities and the mask must share one voxel grid. Co-register them, or pass resample=True "
        "(CLI: --resample) to resample them onto the FLAIR grid."
    )
