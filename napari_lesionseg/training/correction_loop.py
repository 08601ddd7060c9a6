"""The steps of a fine-tune on a correction: mixed patches, a loss that sees false positives, early stopping.

A generator, like the training loop (`training.loop.iter_training`): it yields a `TrainingProgress`
after every step (phase ``"train"``) and after every held-out score (phase ``"held_out"``), checks
the cancel token after every step, and returns a `LoopResult`. The network is scored on the
held-out slab of the corrected subject before the first step and every `eval_every` steps; the
weights of the best score are kept, and the run stops once `patience` scores in a row have not
beaten it (or `time_limit_s` has passed). Unlike `iter_training` it writes no files (no state,
no history): a fine-tune from the viewer takes a couple of minutes, so it is rerun, not resumed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from napari_lesionseg._progress import CancelToken
from napari_lesionseg.constants import THRESHOLD
from napari_lesionseg.engine.devices import cpu_threads
from napari_lesionseg.engine.precision import as_memory_format, autocast, memory_format, model_memory_format
from napari_lesionseg.training.config import TrainingProgress
from napari_lesionseg.training.correction_sampling import CorrectionSampler
from napari_lesionseg.training.data import TrainingSubject
from napari_lesionseg.training.steps import apply_gradients

__all__ = [
    "HeldOut",
    "LoopResult",
    "LoopSettings",
    "cpu_threads",
    "held_out_part",
    "iter_correction_steps",
    "score_held_out",
]


@dataclass(frozen=True)
class HeldOut:
    """The held-out slab (axial rows [z0, z1)) of the corrected subject, cropped with half a patch of context."""

    image: np.ndarray
    mask: np.ndarray
    rows: slice
    spacing: tuple[float, float, float]


@dataclass(frozen=True)
class LoopSettings:
    """Steps, optimiser and stopping rule of the loop (see `correction_settings.FINE_TUNE_DEFAULTS`)."""

    steps: int
    lr: float
    eval_every: int
    patience: int
    device: torch.device
    seed: int = 0
    time_limit_s: float | None = None
    precision: str = "float32"
    tolerance: float = 0.0


@dataclass
class LoopResult:
    """How the loop ended: steps run, the kept (best) step, the held-out scores, why it stopped."""

    steps: int
    cancelled: bool
    best_step: int
    stopped: str | None
    elapsed_s: float
    losses: list[float] = field(default_factory=list)
    held_out: list[dict[str, float]] = field(default_factory=list)
    skipped_steps: int = 0


def held_out_part(subject: TrainingSubject, rows: tuple[int, int], patch_size: Sequence[int]) -> HeldOut | None:
    """The slab `rows` of `subject` cropped to the head, with context rows up to one patch deep, or None if empty.

    Scoring it costs one row of patches side by side over the head's extent: a second or so on a CPU.
    """
    z0, z1 = rows
    if z1 <= z0:
        return None
    depth = max(z1 - z0 + int(patch_size[0]) // 2, int(patch_size[0]))
    c0 = int(np.clip((z0 + z1 - depth) // 2, 0, max(0, subject.mask.shape[0] - depth)))
    c1 = min(subject.mask.shape[0], c0 + depth)
    image = subject.image[:, c0:c1]
    head = np.nonzero(np.any(image != 0, axis=(0, 1)))
    box = tuple(slice(int(a.min()), int(a.max()) + 1) if a.size else slice(None) for a in head)
    return HeldOut(
        np.ascontiguousarray(image[(slice(None), slice(None), *box)]), subject.mask[(slice(z0, z1), *box)],
        slice(z0 - c0, z1 - c0), subject.spacing,
    )


def score_held_out(
    model: torch.nn.Module, held_out: HeldOut, patch_size: Sequence[int], device: Any, precision: str = "float32"
) -> dict[str, float]:
    """DSC and false-positive lesion count of the network on the held-out slab (no overlap, no TTA)."""
    from napari_lesionseg.training.validation import predict_probability

    prob = predict_probability(
        model, held_out.image, patch_size=patch_size, overlap=0.0, tta="none", device=device, precision=precision,
        batch_size=4,
    )  # fmt: skip
    predicted, reference = prob[held_out.rows] >= THRESHOLD, held_out.mask
    tp, total = np.count_nonzero(predicted & reference), np.count_nonzero(predicted) + np.count_nonzero(reference)
    labels, count = ndimage.label(predicted, structure=np.ones((3, 3, 3), bool))
    hits = np.unique(labels[reference & predicted])
    return {"dsc": 1.0 if total == 0 else float(2.0 * tp / total), "fp_lesions": float(count - np.count_nonzero(hits))}


def iter_correction_steps(
    model: torch.nn.Module,
    sampler: CorrectionSampler,
    loss_fn: Any,
    held_out: HeldOut | None,
    settings: LoopSettings,
    *,
    cancel: CancelToken | None = None,
) -> Generator[TrainingProgress, None, LoopResult]:
    """Fine-tune `model` in place on `sampler`'s batches; it ends with the weights of the best held-out score."""
    with torch.random.fork_rng(devices=[]), model_memory_format(model, memory_format(settings.device)):
        torch.manual_seed(settings.seed + 1)  # dropout is seeded without touching the caller's generator
        return (yield from _Steps(model, sampler, loss_fn, held_out, settings).run(cancel))


class _Steps:
    """One loop's network, optimiser, best weights and clock."""

    def __init__(
        self, model: torch.nn.Module, sampler: CorrectionSampler, loss_fn: Any, held_out: HeldOut | None,
        settings: LoopSettings,
    ) -> None:  # fmt: skip
        self.model, self.sampler, self.loss_fn, self.held_out, self.settings = model, sampler, loss_fn, held_out, settings
        from napari_lesionseg.engine.precision import resolve_precision

        self.model.to(settings.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        self.dtype = resolve_precision(settings.precision, settings.device)
        self.format = memory_format(settings.device)
        self.scaler = torch.amp.GradScaler(settings.device.type, enabled=self.dtype == torch.float16)
        self.patch_size = sampler.candidates[0].patch_size
        self.result = LoopResult(0, False, 0, None, 0.0)
        self.best_score, self.best_state, self.misses = -1.0, copy.deepcopy(model.state_dict()), 0
        self.started = time.perf_counter()

    def run(self, cancel: CancelToken | None) -> Generator[TrainingProgress, None, LoopResult]:
        result = self.result
        if self.held_out is not None:
            yield self._score(0)
        for step in range(self.settings.steps):
            result.losses.append(self._train_step(step))
            result.steps = step + 1
            yield self._progress("train", result.steps, result.losses[-1])
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                break
            if self.held_out is not None and (result.steps % self.settings.eval_every == 0 or result.steps == self.settings.steps):
                yield self._score(result.steps)
                if self.misses >= self.settings.patience and result.steps < self.settings.steps:  # the last step ends it anyway
                    result.stopped = "patience"
                    break
            if self.settings.time_limit_s is not None and self._elapsed() >= self.settings.time_limit_s:
                result.stopped = "time"
                break
        if self.held_out is None:
            result.best_step = result.steps
        else:
            self.model.load_state_dict(self.best_state)
        result.elapsed_s = round(self._elapsed(), 3)
        return result

    def _train_step(self, step: int) -> float:
        picked = self.sampler.batch(step)
        patches = [self.sampler.extract(spec) for _, spec in picked]
        device = self.settings.device
        images = torch.from_numpy(np.stack([image for image, _, _ in patches])).to(device)
        masks = torch.from_numpy(np.stack([mask for _, mask, _ in patches])[:, None]).to(device)
        keep = torch.from_numpy(np.stack([weight for _, _, weight in patches])[:, None]).to(device)
        self.model.train()
        with autocast(device, self.dtype):
            logits = self.model(as_memory_format(images, self.format)).float()
        distances = self._distance_maps(picked, patches) if self.loss_fn.requires_distance_map else None
        loss = self.loss_fn(logits[keep], masks[keep], distance_map=None if distances is None else distances[keep])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if not apply_gradients(self.optimizer, self.scaler):  # a non-finite step is skipped and counted
            self.result.skipped_steps += 1
        return float(loss.detach())

    def _distance_maps(self, picked: list, patches: list) -> torch.Tensor:
        from napari_lesionseg.training.losses import signed_distance_map

        maps = [
            signed_distance_map(mask, self.sampler.candidates[spec.subject].subject.spacing)
            for (_, spec), (_, mask, _) in zip(picked, patches)
        ]
        return torch.from_numpy(np.stack(maps)[:, None]).to(self.settings.device)

    def _score(self, step: int) -> TrainingProgress:
        """Score the held-out slab; keep the weights if they score no worse than the best (within the tolerance)."""
        score = score_held_out(self.model, self.held_out, self.patch_size, self.settings.device, self.settings.precision)
        if score["dsc"] > self.best_score - self.settings.tolerance:  # tolerance 0: a strict improvement
            self.best_score = max(self.best_score, score["dsc"])
            self.best_state, self.misses = copy.deepcopy(self.model.state_dict()), 0
            self.result.best_step = step
        else:
            self.misses += 1
        row = {"step": float(step), **score, "best_dsc": float(self.best_score), "best_step": float(self.result.best_step)}
        self.result.held_out.append(row)
        return self._progress("held_out", step, None, row)

    def _progress(self, phase: str, step: int, loss: float | None, metrics: dict | None = None) -> TrainingProgress:
        lr = float(self.optimizer.param_groups[0]["lr"])
        return TrainingProgress(phase, step, self.settings.steps, 0, 1, loss, lr, metrics, round(self._elapsed(), 3))

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started
