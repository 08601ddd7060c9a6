"""What a fine-tune on a correction is asked to do (`FineTuneRequest`) and its defaults, shared by the
Fine-tune dock and `lesionseg finetune` (`training.corrections` runs it).

Sized so that a fine-tune of the compact network on a 2 mm subject, with its before/after
measurement, takes at most about 2 minutes on a 2-core CPU (the README's payoff table gives the
measured times): at most `steps` batches of `batch_size` 32^3 patches and `time_limit_s` seconds of
training, a held-out score every `eval_every` steps, and early stopping after `patience` scores
without improvement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import PRECISIONS

__all__ = ["FINE_TUNE_DEFAULTS", "FineTuneDefaults", "FineTuneRequest", "check_fine_tune_settings"]


@dataclass(frozen=True)
class FineTuneDefaults:
    """Default settings of a fine-tune on a correction (the `FineTuneRequest` fields of the same names).

    Attributes:
        steps: optimiser steps at most (early stopping may end sooner).
        lr: Adam's learning rate (constant).
        batch_size: patches per step, drawn in turn as correction, lesion, brain and replay patches.
        fp_weight: weight of `losses.false_positive_penalty` added to the checkpoint's loss.
        held_out_fraction: share of the corrected lesion voxels whose axial slab is held out for early stopping.
        eval_every: steps between two held-out scores.
        patience: held-out scores in a row without improvement before stopping.
        held_out_tolerance: a held-out DSC within this of the best counts as no worse: its (later)
            weights are kept and patience is not spent. The slab is small, so its score moves by a
            few hundredths from step to step while the network learns the correction.
        time_limit_s: seconds of training after which it stops, keeping the best weights; on a busy
            machine this, not `steps`, ends the run (then the same seed can end at another step).
        rehearsal: subjects of the training generator rehearsed in the replay patches
            (`training.rehearsal`); 0, the default: none (docs/TRAINING.md, "Rehearsing the generator").
    """

    steps: int = 120
    lr: float = 2e-4
    batch_size: int = 4
    fp_weight: float = 1.0
    held_out_fraction: float = 0.2
    eval_every: int = 10
    patience: int = 2
    held_out_tolerance: float = 0.02
    time_limit_s: float | None = 90.0
    rehearsal: int = 0


#: The one set of defaults; the dock's widgets and the CLI's options start from it.
FINE_TUNE_DEFAULTS = FineTuneDefaults()
_DEFAULTS = FINE_TUNE_DEFAULTS


@dataclass(frozen=True, eq=False)
class FineTuneRequest:
    """What to fine-tune, on what, and how (the defaults are `FINE_TUNE_DEFAULTS`, shared by the dock and CLI).

    `training.corrections.iter_fine_tune_on_correction` runs it.

    Attributes:
        checkpoint: the starting checkpoint's file (or name).
        images: modality -> (Z, Y, X) raw image, in the checkpoint's channel order.
        mask: the corrected labels (Z, Y, X); nonzero is lesion.
        spacing: voxel size in mm along (Z, Y, X).
        predicted: the run's mask the user corrected (Z, Y, X); None takes the starting network's
            prediction with the `EVALUATION` settings.
        subject_name: recorded with the new checkpoint and used in its name.
        mask_name: the mask layer's name, for messages.
        folders: extra subject folders (each with a reference mask), replayed with the lineage's cases.
        check_folders: subject folders (each with a mask) scored before and after, never trained on
            (`training.correction_checks`): the payoff on the user's next patients.
        replay: replay the corrected subjects of the checkpoint's lineage (`training.replay`).
        loss: a `vocabulary.LOSSES` name; None keeps the checkpoint's loss.
        beta: F-beta's beta; None keeps the checkpoint's.
        steps, lr, batch_size, fp_weight, held_out_fraction, eval_every, patience, held_out_tolerance,
            rehearsal: see `FineTuneDefaults`.
        time_limit_s: stop (keeping the best weights) after this many seconds of training; None: no limit.
            Runs that reach it are not repeatable step for step (see `FineTuneDefaults`).
        precision: network arithmetic of the measurements and the training, one of `vocabulary.PRECISIONS`
            (`engine.precision`: "auto" is bfloat16 on a CPU with native bfloat16).
        threads: CPU threads for the whole fine-tune; None: one on a busy machine, else torch's setting
            (`correction_loop.cpu_threads`).
        device, seed: where it runs ("auto" picks CUDA when present) and what fixes its randomness.
        measure: score the network on the corrected subject before and after (see `EVALUATION`).
        out_dir: where the new checkpoint goes (default: `checkpoints.user_checkpoint_dir()`).
        out: the new checkpoint's file, instead of a fresh name in `out_dir`.
    """

    checkpoint: str | Path
    images: Mapping[str, np.ndarray]
    mask: np.ndarray
    spacing: tuple[float, float, float]
    predicted: np.ndarray | None = None
    subject_name: str = "subject"
    mask_name: str = "corrected mask"
    folders: Sequence[str | Path] = ()
    check_folders: Sequence[str | Path] = ()
    replay: bool = True
    loss: str | None = None
    beta: float | None = None
    steps: int = _DEFAULTS.steps
    lr: float = _DEFAULTS.lr
    batch_size: int = _DEFAULTS.batch_size
    fp_weight: float = _DEFAULTS.fp_weight
    held_out_fraction: float = _DEFAULTS.held_out_fraction
    eval_every: int = _DEFAULTS.eval_every
    patience: int = _DEFAULTS.patience
    held_out_tolerance: float = _DEFAULTS.held_out_tolerance
    time_limit_s: float | None = _DEFAULTS.time_limit_s
    rehearsal: int = _DEFAULTS.rehearsal
    precision: str = "auto"
    threads: int | None = None
    device: str = "auto"
    seed: int = 0
    measure: bool = True
    out_dir: Path | None = None
    out: Path | None = None


def check_fine_tune_settings(
    *, steps: int, lr: float, batch_size: int, fp_weight: float, held_out_fraction: float, eval_every: int,
    patience: int, time_limit_s: float | None = None, precision: str = "auto", threads: int | None = None,
    held_out_tolerance: float = _DEFAULTS.held_out_tolerance, rehearsal: int = _DEFAULTS.rehearsal,
) -> None:  # fmt: skip
    """Refuse settings a fine-tune cannot run with, in one line naming them."""
    problems = []
    if int(steps) < 1 or int(batch_size) < 1 or int(eval_every) < 1 or int(patience) < 1:
        problems.append(
            f"iterations, batch size, evaluation interval and patience must be >= 1 (got {steps}, {batch_size}, "
            f"{eval_every}, {patience})"
        )
    if not 0 < float(lr) < 1:
        problems.append(f"the learning rate must be in (0, 1), got {lr}")
    if not float(fp_weight) >= 0:
        problems.append(f"the false-positive weight must be >= 0, got {fp_weight}")
    if not 0 <= float(held_out_fraction) < 1:
        problems.append(f"the held-out fraction must be in [0, 1), got {held_out_fraction}")
    if not 0 <= float(held_out_tolerance) < 1:
        problems.append(f"the held-out tolerance must be in [0, 1), got {held_out_tolerance}")
    if time_limit_s is not None and not float(time_limit_s) > 0:
        problems.append(f"the time limit must be > 0 seconds, got {time_limit_s}")
    if not 0 <= int(rehearsal) <= 16:
        problems.append(f"the rehearsed generator subjects must number 0 to 16, got {rehearsal}")
    if threads is not None and int(threads) < 1:
        problems.append(f"threads must be >= 1, got {threads}")
    if precision not in PRECISIONS:
        problems.append(f"the precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if problems:
        raise InvalidInputError("; ".join(problems))
