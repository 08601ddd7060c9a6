"""Fine-tuning: continue training a checkpoint on new subjects (the app's annotate-and-retrain loop)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from typing import Any

from napari_lesionseg._progress import CancelToken, drain
from napari_lesionseg.training.config import TrainingConfig, TrainingProgress, TrainingResult
from napari_lesionseg.training.data import TrainingSubject
from napari_lesionseg.training.loop import iter_training

__all__ = ["fine_tune", "iter_fine_tune"]


def iter_fine_tune(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    subjects: Sequence[TrainingSubject] = (),
    data: Sequence[str | os.PathLike[str]] = (),
    val_subjects: Sequence[TrainingSubject] = (),
    val: Sequence[str | os.PathLike[str]] = (),
    steps: int = 200,
    lr: float = 1e-4,
    cancel: CancelToken | None = None,
    **options: Any,
) -> Generator[TrainingProgress, None, TrainingResult]:
    """Train `checkpoint` further on in-memory `subjects` and/or `data` folders, yielding progress; write `out`.

    The network, loss, beta, modalities and patch size come from the checkpoint's metadata; the
    new checkpoint records it as its parent.

    Args:
        checkpoint: a bundled checkpoint name or a checkpoint path.
        out: the fine-tuned checkpoint to write.
        subjects: training subjects in memory (e.g. `subject_from_arrays` on viewer layers).
        data: training subject folders.
        val_subjects: validation subjects in memory; val: validation folders.
        steps: optimizer steps.
        lr: starting learning rate (lower than from-scratch training).
        cancel: a `threading.Event`; set it to stop after the current step.
        **options: any other `TrainingConfig` field (batch_size, seed, device, work_dir...).
    """
    from napari_lesionseg.engine.checkpoints import load_checkpoint

    _, metadata = load_checkpoint(checkpoint, device="cpu")
    settings: dict[str, Any] = {
        "modalities": tuple(metadata.modalities),
        "loss": metadata.loss,
        "beta": metadata.beta if metadata.beta is not None else 1.0,
        "patch_size": tuple(metadata.patch_size),
        "epochs": max(1, steps),
        "max_steps": steps,
        "lr": lr,
        **options,
    }
    config = TrainingConfig(data=list(data), val=list(val), out=str(out), init_checkpoint=str(checkpoint), **settings)
    return (yield from iter_training(config, subjects=subjects, val_subjects=val_subjects, cancel=cancel))


def fine_tune(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    **kwargs: Any,
) -> TrainingResult:
    """Run :func:`iter_fine_tune` to the end (or to cancellation), passing every step to `on_progress`."""
    return drain(iter_fine_tune(checkpoint, out, **kwargs), on_progress)
