"""The middle of a fine-tune on a correction: its data (corrected subject, replay), loss, loop and saved checkpoint.

`training.corrections.iter_fine_tune_on_correction` measures before and after and calls these two:
`run_correction_steps` builds the sampler over the corrected subject and the replayed cases, the
loss and the loop (`correction_loop`), and `save_fine_tuned` writes the checkpoint with its lineage
and stores the corrected subject as a replay case beside it (`training.replay`).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_lesionseg.training import replay
from napari_lesionseg.training.config import TrainingConfig, TrainingProgress
from napari_lesionseg.training.correction_loop import (
    LoopResult,
    LoopSettings,
    held_out_part,
    iter_correction_steps,
)
from napari_lesionseg.training.correction_sampling import (
    CorrectionSampler,
    SubjectCandidates,
    correction_regions,
    held_out_slab,
)
from napari_lesionseg.training.data import TrainingSubject, load_training_subject, pad_to_patch
from napari_lesionseg.training.rehearsal import rehearsal_subjects

if TYPE_CHECKING:
    from napari_lesionseg._progress import CancelToken
    from napari_lesionseg.engine.checkpoints import CheckpointMetadata
    from napari_lesionseg.training.correction_settings import FineTuneRequest

__all__ = ["CorrectionRun", "replay_subjects", "run_correction_steps", "save_fine_tuned", "training_config"]


@dataclass
class CorrectionRun:
    """What the steps did, and what the saved checkpoint records about its data."""

    loop: LoopResult
    rows: tuple[int, int]
    corrections: dict[str, int]
    replayed: list[str] = field(default_factory=list)
    earlier_cases: list[Path] = field(default_factory=list)
    rehearsed: list[str] = field(default_factory=list)


def run_correction_steps(
    model: torch.nn.Module,
    metadata: CheckpointMetadata,
    subject: TrainingSubject,
    predicted: np.ndarray,
    request: FineTuneRequest,
    *,
    cancel: CancelToken | None = None,
) -> Generator[TrainingProgress, None, CorrectionRun]:
    """Fine-tune `model` in place on the correction (the difference of `predicted` and the subject's mask)."""
    from napari_lesionseg.engine.checkpoints import resolve_checkpoint
    from napari_lesionseg.engine.devices import resolve_device

    config = training_config(metadata, request, out="unsaved.pt")
    patch = tuple(config.patch_size)
    padded = pad_to_patch(subject, patch)
    regions = correction_regions(_padded(predicted, padded.mask.shape), padded.mask)
    rows = held_out_slab(padded.mask, request.held_out_fraction)
    excluded = np.zeros(padded.mask.shape, bool)
    excluded[rows[0] : rows[1]] = True
    corrected = SubjectCandidates(padded, patch, regions=regions, excluded=excluded)
    earlier = replay.recorded_cases(metadata.training, resolve_checkpoint(request.checkpoint)) if request.replay else []
    others = replay_subjects(earlier, request.folders, metadata.modalities, subject.spacing, metadata.optional_modalities)
    rehearsed = rehearsal_subjects(
        request.rehearsal, modalities=metadata.modalities,
        optional=metadata.optional_modalities, present=tuple(request.images), spacing=subject.spacing,
    )  # fmt: skip
    others = [*others, *rehearsed]
    sampler = CorrectionSampler(
        corrected, [SubjectCandidates(pad_to_patch(s, patch), patch) for s in others],
        batch_size=request.batch_size, augment=config.augment, seed=request.seed,
    )  # fmt: skip
    device = resolve_device(request.device)
    settings = LoopSettings(
        steps=int(request.steps), lr=float(request.lr), eval_every=int(request.eval_every),
        patience=int(request.patience), device=device, seed=int(request.seed), time_limit_s=request.time_limit_s,
        precision=request.precision, tolerance=float(request.held_out_tolerance),
    )  # fmt: skip
    held_out = held_out_part(padded, rows, patch)
    loop = yield from iter_correction_steps(model, sampler, _loss(config, request), held_out, settings, cancel=cancel)
    counts = {"rejected": corrected.rejected.count, "painted": corrected.painted.count}
    replayed = [s.name for s in others[: len(others) - len(rehearsed)]]
    return CorrectionRun(loop, rows, counts, replayed, earlier, [s.name for s in rehearsed])


def replay_subjects(
    earlier: list[Path], folders: Any, modalities: list[str], spacing: Any = None, optional: Sequence[str] = ()
) -> list[TrainingSubject]:
    """The earlier corrected cases that can be read (saved in model space), then the subjects of `folders`
    resampled to `spacing` (the corrected subject's: the model's space), so that every patch has one scale."""
    return [
        *replay.load_cases(earlier),
        *(load_training_subject(folder, modalities, optional, spacing) for folder in _subject_dirs(folders)),
    ]


def _subject_dirs(folders: Any) -> list[Path]:
    from napari_lesionseg.training.data import find_subject_dirs

    return [d for p in folders for d in find_subject_dirs(p)]


def training_config(metadata: CheckpointMetadata, request: FineTuneRequest, *, out: str | Path) -> TrainingConfig:
    """The fine-tune as a `TrainingConfig`: the checkpoint's network, loss and patches with the request's settings."""
    loss = request.loss or metadata.loss
    beta = request.beta if request.beta is not None else (metadata.beta if metadata.beta is not None else 1.0)
    return TrainingConfig(
        data=[str(folder) for folder in request.folders], out=str(out), init_checkpoint=str(request.checkpoint),
        modalities=tuple(metadata.modalities), optional_modalities=tuple(metadata.optional_modalities),
        loss=loss, beta=float(beta), patch_size=tuple(metadata.patch_size),
        batch_size=int(request.batch_size), epochs=1, max_steps=int(request.steps), lr=float(request.lr),
        seed=int(request.seed), device=None if request.device == "auto" else request.device,
        precision=request.precision,
    )  # fmt: skip


def save_fine_tuned(
    out: Path,
    model: torch.nn.Module,
    metadata: CheckpointMetadata,
    subject: TrainingSubject,
    request: FineTuneRequest,
    run: CorrectionRun,
    *,
    record: dict[str, Any],
) -> Path:
    """Write the checkpoint (parent, lineage, settings, data, held-out scores) and its replay case beside it."""
    from napari_lesionseg.engine.checkpoints import load_checkpoint, save_checkpoint
    from napari_lesionseg.training.export import model_spacing, write_checkpoint

    config = training_config(metadata, request, out=out)
    model = model.to("cpu")
    write_checkpoint(out, model, config, dict(metadata.model), validation=None, parent=metadata.name,
                     spacing=model_spacing(config, [subject]), steps=run.loop.steps, elapsed_s=run.loop.elapsed_s,
                     world_size=1)  # fmt: skip
    case = replay.save_case(subject, out)
    saved, saved_metadata = load_checkpoint(out)
    saved_metadata.training["fine_tune"] = {
        **_data_record(request, subject, run),
        "lineage": [*((metadata.training or {}).get("fine_tune") or {}).get("lineage", []), metadata.name],
        "replay": replay.lineage_cases(run.earlier_cases, case, out),
        "settings": {key: getattr(request, key) for key in _SETTINGS},
        **record,
    }
    save_checkpoint(out, saved, saved_metadata)
    return out


#: The request's settings recorded in the checkpoint.
_SETTINGS = (
    "steps", "lr", "batch_size", "fp_weight", "held_out_fraction", "eval_every", "patience", "held_out_tolerance",
    "seed", "replay", "rehearsal",
    "precision", "time_limit_s", "threads",
)  # fmt: skip


def _data_record(request: FineTuneRequest, subject: TrainingSubject, run: CorrectionRun) -> dict[str, Any]:
    """What the checkpoint says about the corrected subject, the held-out slab and the replayed cases."""
    return {
        "viewer_subjects": [{
            "name": subject.name, "mask_layer": request.mask_name, "image_layers": list(request.images),
            "shape": list(subject.mask.shape), "spacing_mm": list(subject.spacing),
            "lesion_voxels": int(np.count_nonzero(subject.mask)), "corrections": dict(run.corrections),
        }],
        "folders": [str(folder) for folder in request.folders],
        "replayed": list(run.replayed),
        "rehearsed": list(run.rehearsed),
        "held_out_rows": list(run.rows),
        "held_out": list(run.loop.held_out),
        "best_step": run.loop.best_step,
        "stopped": run.loop.stopped,
        "skipped_steps": run.loop.skipped_steps,
    }  # fmt: skip


def _loss(config: TrainingConfig, request: FineTuneRequest) -> Any:
    from napari_lesionseg.training.losses import make_loss, with_false_positive_penalty

    params = dict(config.loss_params)
    if config.loss == "fbeta":
        params.setdefault("beta", config.beta)
    return with_false_positive_penalty(make_loss(config.loss, **params), request.fp_weight)


def _padded(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`mask` padded at the far end to `shape` (as `pad_to_patch` pads the subject)."""
    mask = np.asarray(mask, bool)
    return np.pad(mask, [(0, n - m) for n, m in zip(shape, mask.shape)])
