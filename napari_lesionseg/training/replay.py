"""Earlier corrected cases, kept with a checkpoint's lineage and replayed by its fine-tunes, so nothing is forgotten.

Every fine-tune on a correction stores its corrected subject (the normalised stack as float16 and
the corrected mask, compressed) as ``replay/<name>-<digest>.npz`` beside the new checkpoint, and
records in the checkpoint's metadata (``training["fine_tune"]["replay"]``) the cases of its parent
plus its own, the most recent `MAX_REPLAY_CASES`. A fine-tune of that checkpoint replays them: one
patch in four comes from them (`correction_sampling.KINDS`). Paths are stored relative to the
checkpoint's folder when the case lies under it, so a folder of checkpoints can be moved as a whole;
a case that cannot be read is skipped with a warning naming it.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_lesionseg._files import write_bytes_atomic
from napari_lesionseg.training.data import TrainingSubject

__all__ = ["MAX_REPLAY_CASES", "REPLAY_FOLDER", "lineage_cases", "load_case", "load_cases", "recorded_cases", "save_case"]

#: Earlier corrected subjects a fine-tune replays at most (the most recent ones). Eight keep a
#: fine-tune's extra memory to about 70 MB at 2 mm (about 0.5 GB at 1 mm: float16 stacks) and its start-up
#: to seconds, while one patch in four of every batch revisits them.
MAX_REPLAY_CASES = 8
#: The folder, beside a checkpoint, that holds its cases.
REPLAY_FOLDER = "replay"


def save_case(subject: TrainingSubject, checkpoint: str | os.PathLike[str]) -> Path:
    """Store `subject` (normalised stack, mask, spacing) beside `checkpoint`; the same data gives the same file."""
    image = np.asarray(subject.image, dtype=np.float16)
    mask = np.asarray(subject.mask, dtype=bool)
    digest = hashlib.sha256(image.tobytes() + np.packbits(mask).tobytes()).hexdigest()[:12]
    path = Path(checkpoint).parent / REPLAY_FOLDER / f"{_slug(subject.name)}-{digest}.npz"
    if not path.exists():
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, image=image, mask=np.packbits(mask), shape=np.array(mask.shape),
            spacing=np.array(subject.spacing, dtype=np.float64), name=np.array(subject.name),
        )  # fmt: skip
        write_bytes_atomic(path, buffer.getvalue())
    return path


def load_case(path: str | os.PathLike[str]) -> TrainingSubject:
    """A stored case as a training subject (its float16 image kept as float16: patches are cast when drawn)."""
    with np.load(path, allow_pickle=False) as data:
        shape = tuple(int(n) for n in data["shape"])
        mask = np.unpackbits(data["mask"], count=int(np.prod(shape))).reshape(shape).astype(bool)
        spacing = tuple(float(s) for s in data["spacing"])
        return TrainingSubject(str(data["name"]), data["image"], mask, spacing)  # type: ignore[arg-type]


def recorded_cases(training: dict[str, Any], checkpoint: str | os.PathLike[str]) -> list[Path]:
    """The case files a checkpoint's metadata lists, resolved against its folder (none for a bundled one)."""
    record = (training or {}).get("fine_tune") or {}
    folder = Path(checkpoint).parent
    return [folder / entry if not Path(entry).is_absolute() else Path(entry) for entry in record.get("replay", [])]


def lineage_cases(earlier: Sequence[Path], new_case: Path, checkpoint: str | os.PathLike[str]) -> list[str]:
    """What a new checkpoint records: its parent's cases plus its own, the latest `MAX_REPLAY_CASES`, as paths."""
    folder = Path(checkpoint).parent.resolve()
    cases = [p for p in earlier if Path(p).resolve() != Path(new_case).resolve()] + [new_case]
    return [_relative(Path(p), folder) for p in cases[-MAX_REPLAY_CASES:]]


def load_cases(paths: Sequence[Path]) -> list[TrainingSubject]:
    """The readable cases among `paths` (the latest `MAX_REPLAY_CASES`); unreadable ones warn and are skipped."""
    subjects = []
    for path in list(paths)[-MAX_REPLAY_CASES:]:
        try:
            subjects.append(load_case(path))
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(f"{path}: earlier corrected case not replayed ({err})", stacklevel=2)
    return subjects


def _relative(path: Path, folder: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(folder)) if resolved.is_relative_to(folder) else str(resolved)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text).strip("-") or "case"
