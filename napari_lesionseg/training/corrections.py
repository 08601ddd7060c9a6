"""Fine-tune a checkpoint on a clinician's corrected subject, and measure what it changed.

The engine of the Fine-tune dock and of `lesionseg finetune` (the annotate-and-retrain loop):

* What changed: the run's mask (the prediction the user corrected; by default the starting network's
  own prediction, which the "before" measurement makes) against the corrected mask gives the rejected
  false positives and the painted missed lesions (`correction_sampling.correction_regions`).
* Data: patches centred on those changes, lesion patches and brain patches of the corrected subject,
  and replayed earlier cases: the corrected subjects of the checkpoint's lineage (`training.replay`)
  and subject folders the user adds (`correction_sampling`).
* Loss: the checkpoint's loss plus `fp_weight` x `losses.false_positive_penalty`, which keeps
  learning on lesion-free patches.
* Early stopping: an axial slab holding `held_out_fraction` of the corrected lesion voxels never
  counts in the loss; the network is scored on it every `eval_every` steps (progress phase
  ``"held_out"``), and the best-scoring weights are saved (`correction_loop`).
* Model space: the corrected subject and the run's mask are resampled into the checkpoint's model
  space (`engine.model_space`) for training; the before/after measurement runs through the one
  prediction entry point with the same quick settings (`EVALUATION`: patches side by side, no
  test-time augmentation) and is scored on the native grid; `measure=False` skips it.
* The result is a new checkpoint (in the per-user folder under a fresh name, never its parent's, or
  `out`), whose metadata records the parent, the lineage, the settings, the replayed cases and
  ``training["fine_tune"]`` (the subject, the held-out scores, before/after).

Example:
    >>> request = FineTuneRequest(checkpoint=path, images={"FLAIR": flair, ...}, mask=corrected,
    ...                           predicted=run_mask, spacing=(2.0, 2.0, 2.0), subject_name="sub-01")  # doctest: +SKIP
    >>> outcome = fine_tune_on_correction(request, on_progress=print)                                  # doctest: +SKIP
    >>> outcome.before["dsc"], outcome.after["dsc"], outcome.held_out[-1]["best_dsc"]                  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_lesionseg._progress import drain
from napari_lesionseg.constants import THRESHOLD
from napari_lesionseg.errors import CheckpointError, InvalidInputError
from napari_lesionseg.evaluation.lesion_size import mask_volume_ml
from napari_lesionseg.training.correction_checks import load_check_subjects, measure_subjects
from napari_lesionseg.training.correction_settings import (
    FINE_TUNE_DEFAULTS,
    FineTuneRequest,
    check_fine_tune_settings,
)
from napari_lesionseg.training.data import native_geometry

if TYPE_CHECKING:
    from napari_lesionseg._progress import CancelToken
    from napari_lesionseg.training import TrainingProgress, TrainingSubject

__all__ = [
    "EVALUATION",
    "FINE_TUNE_DEFAULTS",
    "FineTuneOutcome",
    "FineTuneRequest",
    "MAX_CORRECTION_ML",
    "check_correction",
    "correction_training_subject",
    "fine_tune_on_correction",
    "iter_fine_tune_on_correction",
    "mask_in_model_space",
    "new_checkpoint_path",
]

#: How before and after are measured: whole-volume inference on the corrected subject, patches side by
#: side (no overlap) and no test-time augmentation, so that measuring costs seconds, not minutes.
EVALUATION: dict[str, Any] = {"overlap": 0.0, "tta": "none", "fusion": "spline", "threshold": THRESHOLD}


@dataclass(frozen=True)
class FineTuneOutcome:
    """How a fine-tune ended.

    Attributes:
        checkpoint: the new checkpoint file, or None when cancelled before the end.
        parent: the starting checkpoint's name.
        before: `validation.SUMMARY_KEYS` metrics of the starting network on the corrected subject
            (empty when not measured).
        after: the same for the fine-tuned network (None when cancelled or not measured).
        steps, total_steps: optimizer steps done and planned.
        cancelled: whether the run was stopped early by the user.
        losses: the training loss after every step.
        held_out: every held-out score: step, dsc, fp_lesions, best_dsc, best_step (step 0 is the parent).
        best_step: the step whose weights were saved (0: none beat the starting network on the held-out slab).
        stopped: "patience" or "time" when it stopped before `total_steps`, else None.
        replayed: names of the earlier cases and folder subjects it replayed.
        rehearsed: names of the generator subjects it rehearsed (`training.rehearsal`).
        elapsed_s: wall time of the whole fine-tune, measurements included.
        skipped_steps: steps not applied because their gradients were not finite (`training.steps`).
        checked_before, checked_after: `correction_checks.CHECK_KEYS` metrics of the starting and the
            fine-tuned network on each check subject (by name), never trained on; empty without any.
    """

    checkpoint: Path | None
    parent: str
    before: dict[str, float]
    after: dict[str, float] | None
    steps: int
    total_steps: int
    cancelled: bool
    losses: list[float]
    held_out: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    stopped: str | None = None
    replayed: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    skipped_steps: int = 0
    checked_before: dict[str, dict[str, float]] = field(default_factory=dict)
    checked_after: dict[str, dict[str, float]] = field(default_factory=dict)
    rehearsed: list[str] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        """The new checkpoint's name (file stem)."""
        return None if self.checkpoint is None else self.checkpoint.name.removesuffix(".pt")


#: More than this (mL) marked as lesion is not a lesion mask: MS lesion loads reach tens of mL and rarely 100
#: (issue 18 expects at most 80), while a brain mask or a tissue segmentation chosen by mistake holds 400-1,500.
MAX_CORRECTION_ML = 250.0


def check_correction(
    images: Mapping[str, np.ndarray],
    mask: np.ndarray,
    mask_name: str = "corrected mask",
    spacing: Sequence[float] | None = None,
) -> None:
    """Refuse data that cannot be fine-tuned on, with a message naming the layers.

    Raises:
        InvalidInputError: no images, a mask/image grid mismatch, an empty mask, or (with the voxel
            `spacing`) a mask far larger than any lesion load.
    """
    if not images:
        raise InvalidInputError("No image layers to fine-tune on: open the subject's modalities first.")
    shape = np.shape(mask)
    wrong = {layer: np.shape(data) for layer, data in images.items() if np.shape(data) != shape}
    if wrong:
        shapes = ", ".join(f"{layer!r} {found}" for layer, found in wrong.items())
        raise InvalidInputError(
            f"The corrected mask {mask_name!r} has shape {shape} but the images do not: {shapes}. Fine-tuning "
            "needs the mask on the images' grid: create it from a prediction on these images."
        )
    if not np.any(mask):
        raise InvalidInputError(
            f"The corrected mask {mask_name!r} is empty: paint or accept this subject's lesions before "
            "fine-tuning (a network cannot learn lesions from a mask without any)."
        )
    if spacing is not None and (volume := mask_volume_ml(mask, spacing)) > MAX_CORRECTION_ML:
        raise InvalidInputError(
            f"The corrected mask {mask_name!r} marks {volume:,.0f} mL as lesion, more than any MS lesion load "
            f"(at most about {MAX_CORRECTION_ML:.0f} mL): is it a brain mask or a tissue segmentation? Choose the "
            "corrected lesion mask."
        )


def correction_training_subject(
    images: Mapping[str, np.ndarray],
    mask: np.ndarray,
    *,
    spacing: Sequence[float],
    mask_name: str = "corrected mask",
    name: str = "subject",
    model_spacing: Sequence[float] | None = None,
    modalities: Sequence[str] | None = None,
    optional: Sequence[str] = (),
) -> TrainingSubject:
    """A normalised training subject from the viewer's images and a corrected mask.

    With `model_spacing` (the checkpoint's), images (linear) and mask (linear, then >= 0.5) are
    resampled onto the model-space grid first, so the network trains at the spacing it was made for.
    Channels follow `modalities` (None: the images' order); an absent `optional` one is 0.
    """
    from napari_lesionseg.training.data import channels_subject

    check_correction(images, mask, mask_name, spacing)
    return channels_subject(
        images, mask, spacing, name, modalities=list(images) if modalities is None else modalities,
        optional=optional, model_spacing=model_spacing,
    )  # fmt: skip


def mask_in_model_space(mask: np.ndarray, spacing: Sequence[float], model_spacing: Sequence[float] | None) -> np.ndarray:
    """A native-grid mask on the model-space grid `correction_training_subject` trains on (linear, then >= 0.5)."""
    mask = np.asarray(mask) != 0
    if model_spacing is None:
        return mask
    from napari_lesionseg.engine.model_space import model_space, to_model

    native = native_geometry(mask.shape, spacing)
    space = model_space(native, model_spacing)
    return to_model(mask.astype(np.float32), native, space) >= 0.5 if space.resampled else mask


def new_checkpoint_path(
    parent: str, subject: str, folder: str | Path | None = None, *, now: datetime.datetime | None = None
) -> Path:
    """A fresh file for a fine-tune of `parent` on `subject`: never an existing file, never the parent's."""
    from napari_lesionseg.engine.checkpoints import SUFFIX, user_checkpoint_dir

    folder = Path(folder) if folder is not None else user_checkpoint_dir()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stem = f"{_slug(parent)}_ft-{_slug(subject)}-{now:%Y%m%d-%H%M%S}"
    path, copy = folder / f"{stem}{SUFFIX}", 2
    while path.exists() or path.stem == parent:
        path, copy = folder / f"{stem}-{copy}{SUFFIX}", copy + 1
    return path


def fine_tune_on_correction(
    request: FineTuneRequest,
    *,
    on_progress: Callable[[TrainingProgress], Any] | None = None,
    cancel: CancelToken | None = None,
) -> FineTuneOutcome:
    """Run :func:`iter_fine_tune_on_correction` to the end, passing every step to `on_progress`."""
    return drain(iter_fine_tune_on_correction(request, cancel=cancel), on_progress)


def iter_fine_tune_on_correction(
    request: FineTuneRequest, *, cancel: CancelToken | None = None
) -> Generator[TrainingProgress, None, FineTuneOutcome]:
    """Measure the starting network on the corrected subject, fine-tune it on the correction, save and measure.

    Yields a ``"baseline"`` `TrainingProgress` (with the before metrics), then ``"held_out"`` (step 0
    and every `eval_every` steps: metrics dsc, fp_lesions, best_dsc, best_step) and ``"train"``
    (loss) events, ``"validate"`` before the after measurement and ``"done"`` (with the after metrics).

    Args:
        request: the checkpoint, data and settings.
        cancel: stops after the current step; nothing is saved then.

    Raises:
        InvalidInputError: unusable data (see `check_correction`), a bad setting or folder.
        CheckpointError: the checkpoint is missing, or does not take this many images.
    """
    from napari_lesionseg.engine.devices import resolve_device
    from napari_lesionseg.training.correction_loop import cpu_threads

    _check_settings(request)
    with cpu_threads(request.threads, resolve_device(request.device)) as threads:
        return (yield from _fine_tune(request, threads, cancel))


def _fine_tune(
    request: FineTuneRequest, threads: int, cancel: CancelToken | None
) -> Generator[TrainingProgress, None, FineTuneOutcome]:
    """`iter_fine_tune_on_correction` once the settings are checked, on `threads` CPU threads."""
    from napari_lesionseg.engine.checkpoints import load_checkpoint
    from napari_lesionseg.engine.requirements import trained_spacing
    from napari_lesionseg.training import TrainingProgress

    started = time.perf_counter()
    model, metadata = load_checkpoint(request.checkpoint, device="cpu")
    _check_images(request, metadata)
    model_spacing = trained_spacing(metadata)
    subject = correction_training_subject(
        request.images, request.mask, spacing=request.spacing, mask_name=request.mask_name, name=request.subject_name,
        model_spacing=model_spacing, modalities=metadata.modalities, optional=metadata.optional_modalities,
    )  # fmt: skip
    _check_predicted(request)
    checks = load_check_subjects(request.check_folders, request.folders)
    before, predicted = _baseline((model, metadata), request)
    predicted = mask_in_model_space(predicted, request.spacing, model_spacing)
    yield TrainingProgress("baseline", 0, request.steps, 0, 1, metrics=before)
    if checks:
        yield TrainingProgress("check", 0, request.steps, 0, 1)
    checked_before = measure_subjects((model, metadata), checks, _evaluation_settings(request))
    if cancel is not None and cancel.is_set():
        return FineTuneOutcome(None, metadata.name, before, None, 0, request.steps, True, [])
    from napari_lesionseg.training.correction_run import run_correction_steps, save_fine_tuned

    run = yield from run_correction_steps(model, metadata, subject, predicted, request, cancel=cancel)
    if run.loop.cancelled:
        return FineTuneOutcome(
            None, metadata.name, before, None, run.loop.steps, request.steps, True, run.loop.losses,
            run.loop.held_out, run.loop.best_step, None, run.replayed, round(time.perf_counter() - started, 3),
            run.loop.skipped_steps, rehearsed=run.rehearsed,
        )  # fmt: skip
    out = Path(request.out) if request.out is not None else new_checkpoint_path(metadata.name, request.subject_name, request.out_dir)
    yield TrainingProgress("validate", run.loop.steps, request.steps, 0, 1)
    after = _measure((model, metadata), request)[0] if request.measure else None
    checked_after = measure_subjects((model, metadata), checks, _evaluation_settings(request))
    elapsed = round(time.perf_counter() - started, 3)
    save_fine_tuned(out, model, metadata, subject, request, run, record={
        "metrics_before": dict(before), "metrics_after": dict(after) if after is not None else None,
        "checked": {"before": checked_before, "after": checked_after}, "evaluation": dict(EVALUATION),
        "elapsed_s": elapsed, "threads": threads,
    })  # fmt: skip
    yield TrainingProgress("done", run.loop.steps, request.steps, 0, 1, metrics=after, elapsed_s=elapsed)
    return FineTuneOutcome(
        out, metadata.name, before, after, run.loop.steps, request.steps, False, run.loop.losses, run.loop.held_out,
        run.loop.best_step, run.loop.stopped, run.replayed, elapsed, run.loop.skipped_steps, checked_before,
        checked_after, rehearsed=run.rehearsed,
    )  # fmt: skip


def _baseline(checkpoint: Any, request: FineTuneRequest) -> tuple[dict[str, float], np.ndarray]:
    """The before metrics (empty unless measured) and the run's mask (the request's, or the network's own)."""
    if not request.measure and request.predicted is not None:
        return {}, np.asarray(request.predicted) != 0
    metrics, predicted = _measure(checkpoint, request)
    return (metrics if request.measure else {}), (predicted if request.predicted is None else np.asarray(request.predicted) != 0)


def _measure(checkpoint: Any, request: FineTuneRequest) -> tuple[dict[str, float], np.ndarray]:
    """`EVALUATION` metrics of a checkpoint on the corrected subject and its mask, through the one prediction entry point."""
    from napari_lesionseg.engine.predict import predict
    from napari_lesionseg.training.validation import score

    # The grid makes it run in the model's space, as every prediction the user sees does; on the arrays'
    # own grid a network trained at 1.5 mm marks grey-matter borders of a 1 mm scan.
    grid = native_geometry(np.shape(request.mask), request.spacing)
    result = predict(dict(request.images), checkpoint, _evaluation_settings(request), geometry=grid)
    return score(result.probability, np.asarray(request.mask) != 0, request.spacing), result.probability >= THRESHOLD


def _evaluation_settings(request: FineTuneRequest) -> Any:
    """The `EVALUATION` inference settings on the request's device and precision."""
    from napari_lesionseg.engine.devices import resolve_device
    from napari_lesionseg.engine.settings import InferenceSettings

    return InferenceSettings(
        overlap=EVALUATION["overlap"], tta=EVALUATION["tta"], fusion=(EVALUATION["fusion"],),
        device=str(resolve_device(request.device)), precision=request.precision, uncertainty=False,
        stream_partial=False,
    )  # fmt: skip


def _check_settings(request: FineTuneRequest) -> None:
    """Refuse bad settings before the (slow) baseline measurement rather than after it."""
    from napari_lesionseg.engine.precision import check_precision
    from napari_lesionseg.vocabulary import LOSSES

    check_precision(request.precision)
    if request.loss is not None and request.loss not in LOSSES:
        raise InvalidInputError(f"unknown loss {request.loss!r}; expected one of {', '.join(LOSSES)}")
    if request.beta is not None and not request.beta > 0:
        raise InvalidInputError(f"beta must be positive, got {request.beta}")
    check_fine_tune_settings(
        steps=request.steps, lr=request.lr, batch_size=request.batch_size, fp_weight=request.fp_weight,
        held_out_fraction=request.held_out_fraction, eval_every=request.eval_every, patience=request.patience,
        time_limit_s=request.time_limit_s, precision=request.precision, threads=request.threads,
        held_out_tolerance=request.held_out_tolerance, rehearsal=request.rehearsal,
    )  # fmt: skip
    if request.out is not None and Path(request.out).exists():
        raise InvalidInputError(f"{request.out}: a file is already there; a fine-tune never overwrites a checkpoint")


def _check_images(request: FineTuneRequest, metadata: Any) -> None:
    """The images are the checkpoint's inputs: every required one, and optional ones only from its list."""
    from napari_lesionseg.engine.requirements import required_modalities

    names = set(request.images)
    if not set(required_modalities(metadata)) <= names <= set(metadata.modalities):
        raise CheckpointError(
            f"Checkpoint {metadata.name!r} takes {', '.join(metadata.modalities)}"
            + (f" (optional: {', '.join(metadata.optional_modalities)})" if metadata.optional_modalities else "")
            + f" but was given {', '.join(request.images)}."
        )


def _check_predicted(request: FineTuneRequest) -> None:
    if request.predicted is not None and np.shape(request.predicted) != np.shape(request.mask):
        raise InvalidInputError(
            f"The run's mask has shape {np.shape(request.predicted)} but {request.mask_name!r} has "
            f"{np.shape(request.mask)}: give the prediction that was corrected, on the same grid."
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "subject"
