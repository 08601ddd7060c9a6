"""Fine-tune a checkpoint on a clinician's corrected subject, and measure what it changed.

The engine of the Fine-tune dock (the annotate-and-retrain loop), built on `training.fine_tune`:

* Data: the subject's images as shown in the viewer (in the checkpoint's channel order) with the
  corrected mask, optionally plus subject folders on disk, so the network does not forget them.
  They are resampled into the checkpoint's model space (`engine.model_space`) for training; the
  before/after measurement runs through the prediction entry point and is scored on the native grid.
* Before/after: the starting and the fine-tuned network are scored on the corrected subject by the
  same function with the same settings (`training.validation.validate`: whole-volume inference,
  threshold 0.5), so the difference is the fine-tune's. The "after" numbers are the training
  loop's own final validation on that subject. It is a quick measure (`EVALUATION`: patches side
  by side, no test-time augmentation, about 8 times fewer patches than the paper's 50 % overlap);
  running inference with the new checkpoint gives the full numbers. `measure=False` skips it.
* The result is a new checkpoint in the per-user folder under a fresh name (never its parent's):
  ``<parent>_ft-<subject>-<UTC time>``. The training engine records the parent and the settings;
  this module adds ``training["fine_tune"]``: the in-memory subject (name, shape, spacing, lesion
  voxels), the folders and the before/after metrics.

Example:
    >>> request = FineTuneRequest(checkpoint=path, images={"FLAIR": flair, ...}, mask=corrected,
    ...                           spacing=(2.0, 2.0, 2.0), subject_name="sub-01", steps=40)  # doctest: +SKIP
    >>> outcome = fine_tune_on_correction(request, on_progress=print)                      # doctest: +SKIP
    >>> outcome.before["dsc"], outcome.after["dsc"], outcome.checkpoint.name               # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import re
import tempfile
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_lesionseg._progress import drain
from napari_lesionseg.constants import THRESHOLD
from napari_lesionseg.errors import CheckpointError, InvalidInputError

if TYPE_CHECKING:
    from napari_lesionseg._progress import CancelToken
    from napari_lesionseg.training import TrainingProgress, TrainingSubject

__all__ = [
    "EVALUATION",
    "FineTuneOutcome",
    "FineTuneRequest",
    "check_correction",
    "correction_training_subject",
    "fine_tune_on_correction",
    "iter_fine_tune_on_correction",
    "new_checkpoint_path",
]

#: How before and after are measured: whole-volume inference on the corrected subject, patches side by
#: side (no overlap) and no test-time augmentation, so that measuring costs seconds, not minutes.
EVALUATION: dict[str, Any] = {"overlap": 0.0, "tta": "none", "fusion": "spline", "threshold": THRESHOLD}
#: Validate only once, after the last step (the loop validates every `val_every` epochs).
_VALIDATE_AT_END_ONLY = 10**9


@dataclass(frozen=True, eq=False)
class FineTuneRequest:
    """What to fine-tune, on what, and how.

    Attributes:
        checkpoint: the starting checkpoint's file (or name).
        images: layer name -> (Z, Y, X) raw image, in the checkpoint's channel order.
        mask: the corrected labels (Z, Y, X); nonzero is lesion.
        spacing: voxel size in mm along (Z, Y, X).
        subject_name: recorded with the new checkpoint and used in its name.
        mask_name: the mask layer's name, for messages.
        folders: extra training subject folders (each with a reference mask).
        loss: a `training.LOSSES` name; None keeps the checkpoint's loss.
        beta: F-beta's beta; None keeps the checkpoint's.
        steps, lr, batch_size, device, seed: the training run (device "auto" picks CUDA when present).
        precision: network arithmetic of the measurements and the training (`engine.precision`).
        measure: score the network on the corrected subject before and after (see `EVALUATION`).
        out_dir: where the new checkpoint goes (default: `checkpoints.user_checkpoint_dir()`).
    """

    checkpoint: str | Path
    images: Mapping[str, np.ndarray]
    mask: np.ndarray
    spacing: tuple[float, float, float]
    subject_name: str = "subject"
    mask_name: str = "corrected mask"
    folders: Sequence[str | Path] = ()
    loss: str | None = None
    beta: float | None = None
    steps: int = 40
    lr: float = 1e-4
    batch_size: int = 2
    device: str = "auto"
    seed: int = 0
    precision: str = "auto"
    measure: bool = True
    out_dir: Path | None = None


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
        cancelled: whether the run was stopped early.
        losses: the training loss after every step.
        skipped_steps: steps not applied because their gradients were not finite (`training.steps`).
    """

    checkpoint: Path | None
    parent: str
    before: dict[str, float]
    after: dict[str, float] | None
    steps: int
    total_steps: int
    cancelled: bool
    losses: list[float]
    skipped_steps: int = 0

    @property
    def name(self) -> str | None:
        """The new checkpoint's name (file stem)."""
        return None if self.checkpoint is None else self.checkpoint.name.removesuffix(".pt")


def check_correction(images: Mapping[str, np.ndarray], mask: np.ndarray, mask_name: str = "corrected mask") -> None:
    """Refuse data that cannot be fine-tuned on, with a message naming the layers.

    Raises:
        InvalidInputError: no images, a mask/image grid mismatch, or an empty mask.
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


def correction_training_subject(
    images: Mapping[str, np.ndarray],
    mask: np.ndarray,
    *,
    spacing: Sequence[float],
    mask_name: str = "corrected mask",
    name: str = "subject",
    model_spacing: Sequence[float] | None = None,
) -> TrainingSubject:
    """A normalised training subject from the viewer's images (channel order) and a corrected mask.

    With `model_spacing` (the checkpoint's), images (linear) and mask (linear, then >= 0.5) are
    resampled onto the model-space grid first, so the network trains at the spacing it was made for.
    """
    from napari_lesionseg.training import subject_from_arrays

    check_correction(images, mask, mask_name)
    stack = np.stack([np.asarray(data, dtype=np.float32) for data in images.values()])
    mask = np.asarray(mask)
    if model_spacing is not None:
        from napari_lesionseg.engine.model_space import model_space, to_model

        native = _native_geometry(mask.shape, spacing)
        space = model_space(native, model_spacing)
        if space.resampled:
            stack = np.stack([to_model(channel, native, space) for channel in stack])
            mask = to_model((mask != 0).astype(np.float32), native, space) >= 0.5
            spacing = space.spacing
    return subject_from_arrays(stack, mask, spacing, name)


def _native_geometry(shape: Sequence[int], spacing: Sequence[float]) -> Any:
    """A grid of `shape` voxels of `spacing` mm (where it sits does not matter to the model space)."""
    from napari_lesionseg.data.geometry import Geometry

    return Geometry.from_layer_scale(shape, spacing, (0.0, 0.0, 0.0))


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
    """Measure the starting network on the corrected subject, fine-tune it, save and measure the result.

    Yields a ``"baseline"`` `TrainingProgress` (with the before metrics), then the training loop's
    progress after every step and ``"done"``; returns the `FineTuneOutcome`.

    Args:
        request: the checkpoint, data and settings.
        cancel: stops after the current step; nothing is saved then.

    Raises:
        InvalidInputError: unusable data (see `check_correction`), a bad setting or folder.
        CheckpointError: the checkpoint is missing, or does not take this many images.
    """
    from napari_lesionseg.engine.checkpoints import load_checkpoint, save_checkpoint
    from napari_lesionseg.engine.requirements import trained_spacing
    from napari_lesionseg.training import TrainingProgress
    from napari_lesionseg.training.finetune import iter_fine_tune

    _check_settings(request)
    model, metadata = load_checkpoint(request.checkpoint, device="cpu")
    if len(request.images) != len(metadata.modalities):
        raise CheckpointError(
            f"Checkpoint {metadata.name!r} takes {len(metadata.modalities)} images ({', '.join(metadata.modalities)}) "
            f"but {len(request.images)} were given ({', '.join(request.images)})."
        )
    subject = correction_training_subject(
        request.images, request.mask, spacing=request.spacing, mask_name=request.mask_name, name=request.subject_name,
        model_spacing=trained_spacing(metadata),
    )  # fmt: skip
    before = _measure((model, metadata), request) if request.measure else {}
    del model
    yield TrainingProgress("baseline", 0, request.steps, 0, 0, metrics=before)
    losses: list[float] = []

    out = new_checkpoint_path(metadata.name, request.subject_name, request.out_dir)
    if cancel is not None and cancel.is_set():
        return FineTuneOutcome(None, metadata.name, before, None, 0, request.steps, True, losses)
    with tempfile.TemporaryDirectory(prefix="lesionseg-finetune-") as work_dir:
        steps = iter_fine_tune(
            request.checkpoint, out, subjects=[subject], data=list(request.folders),
            steps=int(request.steps), lr=float(request.lr), cancel=cancel, **_training_options(request, work_dir),
        )  # fmt: skip
        result = yield from _recording_losses(steps, losses)
    after = None
    if result.checkpoint is not None:
        tuned, tuned_metadata = load_checkpoint(result.checkpoint)
        after = _measure((tuned, tuned_metadata), request) if request.measure and not result.cancelled else None
        tuned_metadata.training["fine_tune"] = _record(request, subject, before, after)
        save_checkpoint(result.checkpoint, tuned, tuned_metadata)
    return FineTuneOutcome(
        result.checkpoint, metadata.name, before, after, result.steps, result.total_steps, result.cancelled, losses,
        result.skipped_steps,
    )  # fmt: skip


def _measure(checkpoint: Any, request: FineTuneRequest) -> dict[str, float]:
    """`EVALUATION` metrics of a checkpoint on the corrected subject, through the one prediction entry point."""
    from napari_lesionseg.engine.devices import resolve_device
    from napari_lesionseg.engine.predict import predict
    from napari_lesionseg.engine.settings import InferenceSettings
    from napari_lesionseg.training.validation import score

    device = resolve_device(request.device)
    settings = InferenceSettings(
        overlap=EVALUATION["overlap"], tta=EVALUATION["tta"], fusion=(EVALUATION["fusion"],), device=str(device),
        precision=request.precision, uncertainty=False, stream_partial=False,
    )  # fmt: skip
    geometry = _native_geometry(np.shape(request.mask), request.spacing)
    result = predict(dict(request.images), checkpoint, settings, geometry=geometry)
    return score(result.probability, np.asarray(request.mask) != 0, request.spacing)


def _check_settings(request: FineTuneRequest) -> None:
    """Refuse bad settings before the (slow) baseline measurement rather than after it."""
    from napari_lesionseg.engine.precision import check_precision
    from napari_lesionseg.vocabulary import LOSSES

    check_precision(request.precision)
    if request.loss is not None and request.loss not in LOSSES:
        raise InvalidInputError(f"unknown loss {request.loss!r}; expected one of {', '.join(LOSSES)}")
    if request.beta is not None and not request.beta > 0:
        raise InvalidInputError(f"beta must be positive, got {request.beta}")
    if int(request.steps) < 1 or int(request.batch_size) < 1 or not 0 < float(request.lr) < 1:
        raise InvalidInputError(
            f"need at least 1 iteration and 1 patch per batch and a learning rate in (0, 1); got "
            f"{request.steps} iterations, batch size {request.batch_size}, learning rate {request.lr}"
        )


def _training_options(request: FineTuneRequest, work_dir: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "batch_size": int(request.batch_size),
        "device": None if request.device == "auto" else request.device,
        "seed": int(request.seed),
        "precision": request.precision,
        "work_dir": work_dir,
        "val_every": _VALIDATE_AT_END_ONLY,
        "val_overlap": EVALUATION["overlap"],
        "val_tta": EVALUATION["tta"],
    }
    if request.loss is not None:
        options["loss"] = request.loss
    if request.beta is not None:
        options["beta"] = float(request.beta)
    return options


def _record(
    request: FineTuneRequest, subject: TrainingSubject, before: dict[str, float], after: dict[str, float] | None
) -> dict[str, Any]:
    """What the checkpoint's metadata says about the data of a fine-tune from the viewer."""
    return {
        "viewer_subjects": [
            {
                "name": subject.name,
                "mask_layer": request.mask_name,
                "image_layers": list(request.images),
                "shape": list(subject.mask.shape),
                "spacing_mm": list(subject.spacing),
                "lesion_voxels": int(np.count_nonzero(subject.mask)),
            }
        ],
        "folders": [str(folder) for folder in request.folders],
        "evaluation": dict(EVALUATION),
        "metrics_before": dict(before),
        "metrics_after": dict(after) if after is not None else None,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "subject"


def _recording_losses(
    steps: Generator[TrainingProgress, None, Any], losses: list[float]
) -> Generator[TrainingProgress, None, Any]:
    """Pass `steps` on, appending every training step's loss to `losses`."""
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if step.phase == "train" and step.loss is not None:
            losses.append(float(step.loss))
        yield step
