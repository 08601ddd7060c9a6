"""Modalities assigned by hand to files whose names say nothing (scanner exports such as
``301_3D_FLAIR_SAG.nii.gz``), remembered per folder in the user's folder, beside the checkpoints.

`naming.find_subject_files` reads them for the files of a folder it cannot name by their suffix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from napari_lesionseg._files import write_text_atomic
from napari_lesionseg.constants import MASK_SUFFIX, MODALITIES
from napari_lesionseg.errors import InvalidInputError

__all__ = ["ASSIGNABLE_ROLES", "assign_roles", "assigned_roles", "assignments_path"]

#: What a file may be assigned: a modality or the reference mask.
ASSIGNABLE_ROLES: tuple[str, ...] = (*MODALITIES, MASK_SUFFIX)


def assignments_path() -> Path:
    """The file holding every folder's assignments (``$LESIONSEG_HOME/modality-assignments.json``)."""
    from napari_lesionseg.engine.checkpoints import user_checkpoint_dir

    return user_checkpoint_dir().parent / "modality-assignments.json"


def assigned_roles(folder: str | Path) -> dict[str, str]:
    """``{file name: role}`` assigned to the files of `folder` (empty when none, or when the record is unreadable)."""
    record = _read()
    roles = record.get(str(Path(folder).resolve()), {})
    return {name: role for name, role in roles.items() if role in ASSIGNABLE_ROLES}


def assign_roles(folder: str | Path, roles: Mapping[str, str]) -> Path:
    """Remember `roles` (``{file name: role}``; an empty role unassigns) for `folder`; returns the record's path.

    Raises:
        InvalidInputError: a file that is not in the folder, an unknown role, or one role given to two files.
    """
    folder = Path(folder).resolve()
    chosen = {name: role for name, role in roles.items() if role}
    for name, role in chosen.items():
        if not (folder / name).is_file():
            raise InvalidInputError(f"{folder / name}: no such file to assign {role} to.")
        if role not in ASSIGNABLE_ROLES:
            raise InvalidInputError(f"{folder / name}: unknown role {role!r}; expected one of {', '.join(ASSIGNABLE_ROLES)}.")
    doubled = sorted({role for role in chosen.values() if list(chosen.values()).count(role) > 1})
    if doubled:
        raise InvalidInputError(f"{folder}: {', '.join(doubled)} assigned to more than one file; keep one file per role.")
    record = _read()
    record[str(folder)] = chosen
    path = assignments_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True))
    return path


def _read() -> dict[str, dict[str, str]]:
    try:
        record = json.loads(assignments_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
