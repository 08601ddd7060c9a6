"""A subject: its modalities on the reference (FLAIR) grid and its reference mask.

Modalities of one session on other grids (the same scanner space, e.g. 2-D FLAIR beside a 3-D T1w)
are resampled onto the reference grid in world coordinates, with one note saying what was
resampled; volumes that do not overlap the reference in world space are refused (they need a
registration, which this package does not do).

Example:
    >>> subject = load_subject("data/sub-01")                  # doctest: +SKIP
    >>> x = subject.stack(("FLAIR", "T1w", "T2w", "PDw"))      # (4, Z, Y, X) float32  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.intensity import foreground_mask
from napari_lesionseg.data.naming import find_subject_files, subject_name, unrecognised_files
from napari_lesionseg.data.resample import resample_volume
from napari_lesionseg.data.volumes import Volume, load_volume
from napari_lesionseg.errors import InvalidInputError

__all__ = ["MIN_OVERLAP", "Subject", "load_subject", "on_reference_grid"]

#: Share of the reference's head foreground another volume must cover to count as the same space.
MIN_OVERLAP = 0.5
#: Share of a volume's own head that must lie inside the reference's field of view for a volume covering less than
#: `MIN_OVERLAP` to count as a slab over part of the same head (kept) rather than another space (refused).
MIN_OWN_INSIDE = 0.9


@dataclass(eq=False)
class Subject:
    """One subject's modalities on the reference grid (in `constants.MODALITIES` order) and reference mask.

    Attributes:
        sources: the volumes as read, for the modalities resampled onto the reference grid (the
            prediction entry point resamples those from their own grid into the model's space).
        notes: what loading changed (one line: which volumes were resampled, from which spacing).
    """

    name: str
    folder: Path
    images: dict[str, Volume]
    mask: Volume | None = None
    reference: str = ""
    sources: dict[str, Volume] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

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


def load_subject(folder: str | Path, *, resample: bool = True) -> Subject:
    """Read a subject folder: every modality as a canonical float32 `Volume`, plus the reference mask.

    Modalities and the mask on other grids are resampled onto the FLAIR grid (linear for images,
    nearest for the mask; see `on_reference_grid`), with a note in `Subject.notes`.

    Args:
        folder: the subject folder (see `find_subject_files`).
        resample: kept for older callers; volumes on other grids are always resampled.

    Raises:
        InvalidInputError: a volume does not overlap the FLAIR in world space (names both files).
    """
    folder = Path(folder)
    image_paths, mask_path = find_subject_files(folder)
    images = {}
    for modality, path in image_paths.items():
        volume = load_volume(path, kind="image")
        volume.name = volume.modality = modality
        images[modality] = volume
    mask = None
    if mask_path is not None:
        mask = load_volume(mask_path, kind="mask")
        mask.name = "reference mask"
    name = subject_name(folder, [*image_paths.values()])
    subject = on_reference_grid(name, folder, images, mask)
    ignored = _ignored_note(name, folder)
    return subject if ignored is None else dataclasses.replace(subject, notes=(*subject.notes, ignored))


def _ignored_note(name: str, folder: Path) -> str | None:
    """A line naming the folder's NIfTI files that were left out (not this program's own outputs), else None.

    A clinician's ``t1.nii.gz`` beside ``sub-01_FLAIR.nii.gz`` would otherwise be dropped without a word, and
    the run would quietly use fewer inputs than the folder holds.
    """
    from napari_lesionseg.data.outputs import is_own_output

    left_out = [path.name for path in unrecognised_files(folder) if not is_own_output(path)]
    if not left_out:
        return None
    return (
        f"{name}: left out {', '.join(left_out)}: the name gives no modality (rename it like "
        f"{name}_T1w.nii.gz, or pass each file as MODALITY=PATH, e.g. T1w=PATH)"
    )


def on_reference_grid(name: str, folder: Path, images: Mapping[str, Volume], mask: Volume | None = None) -> Subject:
    """A subject with every volume on the FLAIR's grid (or the first image's), resampled where needed.

    Raises:
        InvalidInputError: two modalities hold the same voxels (one scan given twice), or a volume
            does not overlap the FLAIR in world space.
    """
    _check_distinct(images)
    reference = images["FLAIR"] if "FLAIR" in images else next(iter(images.values()))
    moved = [v for v in (*images.values(), mask) if v is not None and not v.geometry.same_grid(reference.geometry)]
    if moved:
        foreground = foreground_mask(reference.data)
        for volume in moved:
            _check_overlap(volume, reference, foreground)
    ids = {id(v) for v in moved}
    on_grid = {m: resample_volume(v, reference.geometry) if id(v) in ids else v for m, v in images.items()}
    if mask is not None and id(mask) in ids:
        mask = resample_volume(mask, reference.geometry, kind="mask")
    sources = {m: v for m, v in images.items() if id(v) in ids}
    notes = (_resampled_note(name, moved, reference),) if moved else ()
    return Subject(name, folder, on_grid, mask, reference.modality or "", sources=sources, notes=notes)


def _check_distinct(images: Mapping[str, Volume]) -> None:
    """Refuse one scan given as two modalities (the same file twice, or a copy): the network would read it as both."""
    seen: list[tuple[str, Volume]] = []
    for modality, volume in images.items():
        for other_modality, other in seen:
            same = volume.data.shape == other.data.shape and _equal_voxels(volume.data, other.data)
            if same and volume.data.min() != volume.data.max():  # blank exports are refused at the run, by name
                raise InvalidInputError(
                    f"{volume.path or modality}: its voxels are those of {other.path or other_modality} "
                    f"({other_modality}): one scan given as both {other_modality} and {modality}; give each "
                    "modality its own scan, or leave one out."
                )
        seen.append((modality, volume))


def _equal_voxels(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two same-shape arrays are equal; a sparse sample settles it first for different scans."""
    sample = slice(None, None, 1009)
    return np.array_equal(a.ravel()[sample], b.ravel()[sample]) and np.array_equal(a, b)


def _check_overlap(volume: Volume, reference: Volume, foreground: np.ndarray) -> None:
    """Refuse `volume` when it covers less than `MIN_OVERLAP` of the reference's head foreground and its own head
    is not inside the reference's field of view: then the two were not acquired in the same space.

    A slab over part of the head (a raw T1w with fewer slices) is kept: its head lies inside the
    reference's field of view, and prediction says how much of it each input covers (`engine.coverage`).
    """
    share = _share_inside(foreground, reference.geometry, volume.geometry)
    if share is None or share >= MIN_OVERLAP:
        return
    own = _share_inside(foreground_mask(volume.data), volume.geometry, reference.geometry)
    if own is None or own < MIN_OWN_INSIDE:
        raise InvalidInputError(_no_overlap_message(volume, reference, share))


def _share_inside(foreground: np.ndarray, grid: Geometry, other: Geometry) -> float | None:
    """The share of `foreground` (on `grid`) that lies inside `other`'s field of view, None without foreground."""
    points = np.argwhere(foreground)[::7]  # a sample is plenty for a share
    if not len(points):
        return None
    to_other = np.linalg.inv(other.canonical_affine) @ grid.canonical_affine
    coords = points @ to_other[:3, :3].T + to_other[:3, 3]
    return float(np.all((coords > -0.5) & (coords < np.asarray(other.shape) - 0.5), axis=1).mean())


def _label(volume: Volume) -> str:
    return "reference mask" if volume.modality is None else volume.modality


def _mm(geometry: Geometry) -> str:
    """Voxel size in the file's axis order, as FSL, ITK-SNAP and nibabel show it."""
    return "x".join(f"{s:.2g}" for s in geometry.source_spacing) + " mm"


def _rotation(geometry: Geometry, reference: Geometry) -> str:
    """", rotated N degrees from it" when the two grids' axes are not parallel (by more than a degree), else ""."""
    axes = [m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0) for m in (geometry.canonical_affine, reference.canonical_affine)]
    turn = axes[1].T @ axes[0]
    degrees = float(np.degrees(np.arccos(np.clip((np.trace(turn) - 1) / 2, -1.0, 1.0))))
    return f", rotated {degrees:.0f} degrees from it" if degrees > 1 else ""


def _shape(geometry: Geometry) -> str:
    return "x".join(map(str, geometry.source_shape))


def _resampled_note(name: str, moved: list[Volume], reference: Volume) -> str:
    listed = ", ".join(
        f"{_label(v)} ({_mm(v.geometry)}, {_shape(v.geometry)}{_rotation(v.geometry, reference.geometry)})" for v in moved
    )
    return (
        f"{name}: resampled {listed} onto the {reference.modality} grid ({_mm(reference.geometry)}, "
        f"{_shape(reference.geometry)}) in scanner coordinates"
    )


def _no_overlap_message(volume: Volume, reference: Volume, share: float) -> str:
    what = _label(volume)
    return (
        f"{volume.path}: the {what} does not overlap the {reference.modality} {reference.path} in scanner space "
        f"(it covers {share:.0%} of the {reference.modality}'s head, less than {MIN_OVERLAP:.0%}; "
        f"{what}: {volume.geometry.describe()}; {reference.modality}: {reference.geometry.describe()}). They were "
        "not acquired in the same space: register them first (e.g. FSL FLIRT or ANTs); napari-lesionseg does not register"
    )
