"""Before and after on subjects the fine-tune never trains on: the payoff on the user's next patients.

A fine-tune scores itself on the corrected subject, which it has seen. The question a clinician asks
is whether the next patients of that scanner come out better, so the fine-tune also takes "check"
subject folders (each with a reference or corrected mask), predicts them with the starting and the
fine-tuned network through the one prediction entry point and scores both against the mask, after
the minimum lesion size that `lesionseg predict` applies. They are never sampled for training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_lesionseg.constants import MIN_LESION_MM3, THRESHOLD
from napari_lesionseg.errors import InvalidInputError

if TYPE_CHECKING:
    from napari_lesionseg.data.subject import Subject

__all__ = ["CHECK_COLUMNS", "CHECK_KEYS", "checked_rows", "load_check_subjects", "measure_subjects"]

#: What is reported per checked subject (keys of `evaluation.metrics.compute_metrics`).
CHECK_KEYS = ("dsc", "sensitivity", "ppv", "ltpr", "lfpr", "n_lesions_pred", "n_lesions_fp")
#: Columns of `checked_rows`, as the Fine-tune dock and `lesionseg finetune` show them.
CHECK_COLUMNS = ("subject", "DSC before", "DSC after", "FP before", "FP after")  # false-positive lesions


def load_check_subjects(folders: Sequence[str | Path], training: Sequence[str | Path] = ()) -> list[Subject]:
    """The subjects under `folders` (each with a mask), refusing one that is also trained on."""
    from napari_lesionseg.data.subject import load_subject
    from napari_lesionseg.training.data import find_subject_dirs

    trained = {d.resolve() for p in training for d in find_subject_dirs(p)}
    subjects = []
    for folder in (d for p in folders for d in find_subject_dirs(p)):
        if folder.resolve() in trained:
            raise InvalidInputError(
                f"{folder} is both trained on and checked: a check subject must be one the fine-tune never sees"
            )
        subject = load_subject(folder)
        if subject.mask is None:
            raise InvalidInputError(f"check subject {folder} has no lesion mask to score against")
        subjects.append(subject)
    return subjects


def measure_subjects(
    checkpoint: Any, subjects: Sequence[Subject], settings: Any, *, min_lesion_mm3: float = MIN_LESION_MM3
) -> dict[str, dict[str, float | None]]:
    """`CHECK_KEYS` of `checkpoint` on each subject (by name), predicted with `settings` (None: undefined, e.g. PPV of nothing)."""
    from napari_lesionseg.engine.predict import predict
    from napari_lesionseg.evaluation.lesion_size import drop_small_lesions
    from napari_lesionseg.evaluation.metrics import compute_metrics

    scores = {}
    for subject in subjects:
        result = predict(subject, checkpoint, settings)
        spacing = subject.geometry.spacing
        mask = drop_small_lesions(result.probability >= THRESHOLD, spacing, min_lesion_mm3)
        metrics = compute_metrics(mask, np.asarray(subject.mask.data) != 0, spacing=spacing)
        scores[subject.name] = {key: None if metrics[key] is None else float(metrics[key]) for key in CHECK_KEYS}
    return scores


def checked_rows(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> list[list[str]]:
    """One row per checked subject (`CHECK_COLUMNS`), then their mean when there are several."""
    names = [name for name in before if name in after]
    rows = [[name, *_cells(before[name], after[name])] for name in names]
    if len(names) > 1:
        mean = {key: {k: float(np.mean([d[n][k] for n in names])) for k in ("dsc", "n_lesions_fp")} for key, d in
                (("before", before), ("after", after))}  # fmt: skip
        rows.append(["mean", *_cells(mean["before"], mean["after"])])
    return rows


def _cells(before: dict[str, float], after: dict[str, float]) -> list[str]:
    return [f"{before['dsc']:.3f}", f"{after['dsc']:.3f}", f"{before['n_lesions_fp']:.0f}", f"{after['n_lesions_fp']:.0f}"]
