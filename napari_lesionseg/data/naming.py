"""Subject file naming: which file of a subject folder holds which modality or mask.

The one place that parses BIDS-like names (``<sub>_FLAIR.nii.gz``, ``<sub>_label-lesion_mask.nii``,
``<sub>_label-lesion_corrected.nii.gz``; case-insensitive).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from napari_lesionseg.constants import MASK_SUFFIX, MODALITIES
from napari_lesionseg.errors import InvalidInputError

__all__ = [
    "CORRECTED_SUFFIX",
    "NIFTI_SUFFIXES",
    "find_subject_files",
    "is_nifti_path",
    "modality_of",
    "nifti_stem",
    "parse_subject_filename",
    "role_of",
    "subject_name",
    "subject_of",
    "unrecognised_files",
]


#: File name endings read and written as NIfTI (compared case-insensitively).
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")


_ROLE_PATTERN = re.compile(
    r"^(?:(?P<prefix>.+)_)?(?P<role>" + "|".join(re.escape(m) for m in (*MODALITIES, MASK_SUFFIX)) + r")$",
    re.IGNORECASE,
)


_ROLE_SPELLING = {role.lower(): role for role in (*MODALITIES, MASK_SUFFIX)}


def is_nifti_path(path: str | Path) -> bool:
    """Whether the file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def modality_of(path: str | Path) -> str | None:
    """Modality named by a BIDS-like suffix (``sub-01_T2w.nii.gz`` -> ``"T2w"``), else None."""
    parsed = parse_subject_filename(Path(path))
    return parsed[1] if parsed is not None and parsed[1] in MODALITIES else None


def parse_subject_filename(path: Path) -> tuple[str, str] | None:
    if path.name.startswith(".") or not is_nifti_path(path) or path.is_dir():
        return None
    match = _ROLE_PATTERN.match(nifti_stem(path))
    if match is None:
        return None
    return match["prefix"] or "", _ROLE_SPELLING[match["role"].lower()]


def find_subject_files(folder: str | Path) -> tuple[dict[str, Path], Path | None]:
    """Files of one subject folder: ``({modality: path} in MODALITIES order, mask path or None)``.

    Files are recognised by BIDS-like suffixes (``<sub>_FLAIR.nii.gz``, ``<sub>_T1w.nii``,
    ``<sub>_label-lesion_mask.nii.gz``; case-insensitive); other files are ignored.

    Raises:
        InvalidInputError: not a folder, no recognisable modality, a modality present twice, or the
            files of more than one subject.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(
            f"{folder}: not a folder. Expected a subject folder with files like sub-01_FLAIR.nii.gz."
        )
    by_role: dict[str, list[Path]] = {}
    prefixes: dict[str, list[Path]] = {}
    assigned = _assigned_roles(folder)
    for path in sorted(folder.iterdir()):
        parsed = parse_subject_filename(path)
        if parsed is not None:
            prefix, role = parsed
            by_role.setdefault(role, []).append(path)
            prefixes.setdefault(prefix, []).append(path)
        elif path.name in assigned:  # named by hand (`assignments`): it belongs to the folder's subject
            by_role.setdefault(assigned[path.name], []).append(path)
    _check_one_subject(folder, prefixes)
    _check_no_duplicates(folder, by_role)
    images = {m: by_role[m][0] for m in MODALITIES if m in by_role}
    if not images:
        raise InvalidInputError(_no_modality_message(folder))
    mask = by_role.get(MASK_SUFFIX, [None])[0]
    return images, mask


def unrecognised_files(folder: str | Path) -> list[Path]:
    """The NIfTI files of a subject folder whose names carry no role (modality, reference or corrected mask) and
    that were not assigned one by hand: what reading the folder leaves out."""
    folder = Path(folder)
    assigned = _assigned_roles(folder)
    return [
        path for path in sorted(folder.iterdir())
        if is_nifti_path(path) and not path.name.startswith(".") and path.is_file()
        and role_of(path) is None and path.name not in assigned
    ]  # fmt: skip


def _assigned_roles(folder: Path) -> dict[str, str]:
    from napari_lesionseg.data.assignments import assigned_roles

    return assigned_roles(folder)


def subject_name(folder: Path, paths: Sequence[Path]) -> str:
    parsed = parse_subject_filename(paths[0])
    return parsed[0] if parsed is not None and parsed[0] else folder.resolve().name


def _check_one_subject(folder: Path, prefixes: dict[str, list[Path]]) -> None:
    if len(prefixes) > 1:
        listing = "; ".join(
            f"{prefix or '(no prefix)'}: {', '.join(p.name for p in paths)}" for prefix, paths in prefixes.items()
        )
        raise InvalidInputError(
            f"{folder}: holds the files of more than one subject ({listing}). Put each subject in its own folder."
        )


def _check_no_duplicates(folder: Path, by_role: dict[str, list[Path]]) -> None:
    for role, paths in by_role.items():
        if len(paths) > 1:
            raise InvalidInputError(
                f"{folder}: {role} is present {len(paths)} times ({', '.join(p.name for p in paths)}). "
                "Keep one file per modality."
            )


def _no_modality_message(folder: Path) -> str:
    niftis = sorted(p.name for p in folder.iterdir() if is_nifti_path(p) and not p.name.startswith("."))
    found = ", ".join(niftis[:8]) + (", ..." if len(niftis) > 8 else "") if niftis else "no NIfTI files"
    expected = ", ".join(f"<subject>_{m}.nii.gz" for m in MODALITIES)
    return (
        f"{folder}: no recognisable modality (found {found}). Expected files named {expected}, "
        f"and optionally <subject>_{MASK_SUFFIX}.nii.gz; or pass each file as MODALITY=PATH (lesionseg predict "
        "FLAIR=PATH T1w=PATH), or assign the files' modalities in napari's Subject dock."
    )


#: File name suffix of a corrected mask (``<sub>_label-lesion_corrected.nii.gz``); the subject reader
#: does not take it for a modality or for the reference mask.
CORRECTED_SUFFIX = "label-lesion_corrected"


_ROLES = (*MODALITIES, MASK_SUFFIX, CORRECTED_SUFFIX)


def role_of(path: str | os.PathLike[str]) -> str | None:
    """The subject-file role a NIfTI name carries (a modality, the reference mask, the corrected mask), else None."""
    path = Path(path)
    if not is_nifti_path(path):
        return None
    stem = nifti_stem(path).lower()
    return next((role for role in _ROLES if stem == role.lower() or stem.endswith(f"_{role.lower()}")), None)


def subject_of(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """Folder and subject name of a subject file ``<folder>/<sub>_<ROLE>.nii[.gz]``, else None.

    ROLE is a modality, the reference mask or the corrected mask (case-insensitive); a file named
    only by its role (``FLAIR.nii.gz``) takes the folder's name as the subject name.
    """
    path = Path(path)
    stem = nifti_stem(path)
    for role in _ROLES:
        if stem.lower() == role.lower():
            return path.parent, path.parent.name
        if stem.lower().endswith(f"_{role.lower()}"):
            return path.parent, stem[: -len(role) - 1]
    return None
