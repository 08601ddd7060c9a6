"""The training loop: Adam with the paper's schedule, patch batches, validation, resumable state.

`iter_training` is a generator that yields a `TrainingProgress` after every step and returns a
`TrainingResult`, so the napari dock can drive it from a thread worker; `train` runs it with a
callback. Both honour a cancel token (a `threading.Event`): the run stops after the current
step, saves its state, and `resume=True` later continues exactly where it stopped.
Under `torchrun` every rank runs the same loop on its shard of the patches (DDP); only rank 0
writes files. The network runs in the config's precision (`engine.precision`: bfloat16 autocast and
channels-last-3d on a CPU with native bfloat16, float16 with gradient scaling on CUDA); a step
whose gradients are not finite is skipped and counted (`training.steps`). When the loop ends, the
process's torch generators, cuDNN's benchmark flag and the network's memory format are as before.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from napari_lesionseg._progress import CancelToken, drain
from napari_lesionseg.engine.precision import (
    as_memory_format,
    autocast,
    convert_model,
    memory_format,
    resolve_precision,
    restore_contiguous,
)
from napari_lesionseg.errors import CheckpointError, InvalidInputError
from napari_lesionseg.training import distributed as ddp
from napari_lesionseg.training.config import TrainingConfig, TrainingProgress, TrainingResult
from napari_lesionseg.training.data import TrainingSubject, load_training_subjects, pad_to_patch
from napari_lesionseg.training.export import learning_spacing, model_spacing, write_checkpoint
from napari_lesionseg.training.logs import write_history
from napari_lesionseg.training.sampling import PatchSampler, PatchSpec
from napari_lesionseg.training.schedule import PaperSchedule, make_scheduler
from napari_lesionseg.training.setup import checked_patch_size, configured_loss, initial_model
from napari_lesionseg.training.state import (
    STATE_FILE,
    load_state,
    restore_rng,
    restored_process_state,
    rng_state,
    save_state,
)
from napari_lesionseg.training.steps import apply_gradients
from napari_lesionseg.training.validation import validate

__all__ = ["iter_training", "train"]



def train(
    config: TrainingConfig,
    *,
    subjects: Sequence[TrainingSubject] = (),
    val_subjects: Sequence[TrainingSubject] = (),
    on_progress: Callable[[TrainingProgress], None] | None = None,
    cancel: CancelToken | threading.Event | None = None,
) -> TrainingResult:
    """Run `config` to the end (or until `cancel` is set) and return the result.

    Args:
        config: the run; its data/val folders are loaded and added to `subjects`/`val_subjects`.
        subjects: in-memory training subjects (e.g. annotations from the viewer).
        val_subjects: in-memory validation subjects.
        on_progress: called with every `TrainingProgress` (on every rank).
        cancel: stop after the current step, saving the resumable state.
    """
    return drain(iter_training(config, subjects=subjects, val_subjects=val_subjects, cancel=cancel), on_progress)


def iter_training(
    config: TrainingConfig,
    *,
    subjects: Sequence[TrainingSubject] = (),
    val_subjects: Sequence[TrainingSubject] = (),
    cancel: CancelToken | threading.Event | None = None,
) -> Generator[TrainingProgress, None, TrainingResult]:
    """Yield progress after every step and validation; return the `TrainingResult` (see `train`)."""
    context = ddp.init_distributed(config.device)
    run: _Run | None = None
    try:
        with restored_process_state():
            run = _Run(config, context, subjects, val_subjects)
            return (yield from run.loop(cancel))
    finally:
        if run is not None:
            restore_contiguous(run.contiguous)
        ddp.destroy_distributed(context)


class _Run:
    """Everything one run holds: network, optimizer, schedule, sampler and the position reached."""

    def __init__(
        self,
        config: TrainingConfig,
        context: ddp.DistContext,
        subjects: Sequence[TrainingSubject],
        val_subjects: Sequence[TrainingSubject],
    ) -> None:
        self.context, self.device = context, context.device
        torch.manual_seed(config.seed)
        model, self.model_config, start = initial_model(config, self.device)
        self.parent = None if config.warm_start else start
        self.config = dataclasses.replace(config, patch_size=checked_patch_size(config, self.model_config))
        if self.parent is None:  # a network of its own (fresh or warm-started) records its patch size
            self.model_config["patch_size"] = list(self.config.patch_size)
        self.dtype = resolve_precision(config.precision, self.device)
        self.memory_format = memory_format(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # one patch shape: pick the fastest kernels once
        self.sampler, self.val_set = self._data(subjects, val_subjects)
        self.loss_fn = configured_loss(self.config)
        self.contiguous = convert_model(model, self.memory_format)  # before DDP builds its gradient buckets
        self.model = ddp.wrap_model(model, context)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        schedule = PaperSchedule(config.lr_decay, config.lr_decay_every, config.lr_growth, config.lr_growth_every)
        self.scheduler = make_scheduler(self.optimizer, schedule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.steps_per_epoch = math.ceil(math.ceil(len(self.sampler) / context.world_size) / config.batch_size)
        total = config.epochs * self.steps_per_epoch
        self.total_steps = total if config.max_steps is None else min(total, config.max_steps)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.loss_sum, self.loss_count, self.elapsed = 0.0, 0, 0.0
        self.skipped_steps, self.epoch_skipped = 0, 0
        self.history: list[dict[str, Any]] = []
        self.validation: dict[str, Any] | None = None
        self.finished = False
        torch.manual_seed(config.seed + 1 + context.rank)  # dropout differs per rank, repeatably
        self._maybe_resume()

    def _data(
        self, subjects: Sequence[TrainingSubject], val_subjects: Sequence[TrainingSubject]
    ) -> tuple[PatchSampler, list[TrainingSubject]]:
        """The patch sampler over the training subjects, and the validation subjects."""
        config = self.config
        optional = config.optional_modalities
        space = learning_spacing(config)
        train_set = [*subjects, *load_training_subjects(config.data, config.modalities, optional, space)]
        val_set = [*val_subjects, *load_training_subjects(config.val, config.modalities, optional, space)]
        if not train_set:
            raise InvalidInputError("no training subjects: pass --data folders or in-memory subjects")
        sampler = PatchSampler(
            [pad_to_patch(s, config.patch_size) for s in train_set], config.patch_size,
            config.patches_per_subject, config.min_lesion_voxels, config.augment, config.seed,
            optional_channels=[config.modalities.index(m) for m in optional], channel_dropout=config.modality_dropout,
            brain_fraction=config.brain_patch_fraction, lesion_fraction=config.lesion_patch_fraction,
        )  # fmt: skip
        return sampler, val_set

    # --- the loop ------------------------------------------------------------------------------

    def loop(self, cancel: CancelToken | threading.Event | None) -> Generator[TrainingProgress, None, TrainingResult]:
        """Train until the last step or a cancel; validate, log and save along the way."""
        started = time.perf_counter() - self.elapsed
        while self.step < self.total_steps:
            batches = self._epoch_batches()
            self.loss_fn.set_epoch(self.epoch)
            cancelled = False
            for batch in batches[self.batch_in_epoch :]:
                loss = self._train_step(batch)
                self.elapsed = time.perf_counter() - started
                yield self._progress("train", loss)
                if self.step % self.config.save_every == 0:
                    self._save_state()
                cancelled = ddp.any_rank(cancel is not None and cancel.is_set(), self.context)
                if cancelled or self.step >= self.total_steps:
                    break
            if self.batch_in_epoch >= len(batches):
                due = (self.epoch + 1) % self.config.val_every == 0 or self.step >= self.total_steps
                yield from self._record_epoch(validate_now=due and not cancelled, complete=True)
            if cancelled:
                self._save_state()
                return self._result(cancelled=True)
        if self.batch_in_epoch and not self.finished:  # max_steps ended the run inside an epoch
            yield from self._record_epoch(validate_now=True, complete=False)
        if ddp.broadcast_object(not self.finished or not Path(self.config.out).exists(), self.context):
            yield from self._finish()
        return self._result(cancelled=False)

    def _epoch_batches(self) -> list[list[PatchSpec]]:
        """This rank's share of the epoch's patches, shuffled alike on every rank, in batches."""
        specs = self.sampler.epoch(self.epoch)
        order = DistributedSampler(
            specs, num_replicas=self.context.world_size, rank=self.context.rank,
            shuffle=True, seed=self.config.seed, drop_last=False,
        )
        order.set_epoch(self.epoch)
        mine = [specs[i] for i in order]
        size = self.config.batch_size
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    def _train_step(self, batch: list[PatchSpec]) -> float:
        images, masks, distances = self._collate(batch)
        self.model.train()
        with autocast(self.device, self.dtype):
            logits = self.model(as_memory_format(images, self.memory_format))
        loss = self.loss_fn(logits.float(), masks, distance_map=distances)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        applied = apply_gradients(self.optimizer, self.scaler)
        if not applied:
            self.skipped_steps, self.epoch_skipped = self.skipped_steps + 1, self.epoch_skipped + 1
        with warnings.catch_warnings():  # the schedule follows the steps taken, applied or not, as with AMP
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler", UserWarning)
            self.scheduler.step()
        value = float(loss.detach())
        self.step, self.batch_in_epoch = self.step + 1, self.batch_in_epoch + 1
        self.loss_sum, self.loss_count = self.loss_sum + value, self.loss_count + 1
        return value

    def _collate(self, batch: list[PatchSpec]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Batch tensors on the device: images, masks and, for the boundary loss, distance maps."""
        patches = [self.sampler.extract(spec) for spec in batch]
        images = torch.from_numpy(np.stack([image for image, _ in patches])).to(self.device)
        masks = torch.from_numpy(np.stack([mask for _, mask in patches])[:, None]).to(self.device)
        distances = None
        if self.loss_fn.requires_distance_map:
            from napari_lesionseg.training.losses import signed_distance_map

            maps = [
                signed_distance_map(mask, self.sampler.subjects[spec.subject].spacing)
                for spec, (_, mask) in zip(batch, patches)
            ]
            distances = torch.from_numpy(np.stack(maps)[:, None]).to(self.device)
        return images, masks, distances

    def _record_epoch(self, *, validate_now: bool, complete: bool) -> Generator[TrainingProgress, None, None]:
        """Append the epoch's row (mean loss, lr, validation) to the history, move on, save the state."""
        row = {
            "epoch": self.epoch + 1, "step": self.step, "train_loss": self._mean_loss(), "lr": self._lr(),
            "skipped_steps": self.epoch_skipped,
        }  # fmt: skip
        if self.val_set and validate_now:
            self.validation = self._validate()
            row.update({f"val_{k}": v for k, v in self.validation["mean"].items()})
            yield self._progress("validate", metrics=self.validation["mean"])
        row["elapsed_s"] = round(self.elapsed, 3)
        self.history.append(row)
        self.loss_sum, self.loss_count, self.epoch_skipped = 0.0, 0, 0
        if self.context.is_main:
            write_history(self.config.run_dir, self.history)
        if complete:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self._save_state()

    def _finish(self) -> Generator[TrainingProgress, None, None]:
        """Write the checkpoint (rank 0) and mark the state finished."""
        self.finished = True
        ddp.broadcast_buffers(self.model, self.context)
        if self.context.is_main:
            write_checkpoint(
                self.config.out, ddp.unwrap(self.model), self.config, self.model_config,
                validation=self.validation, parent=self.parent, steps=self.step,
                spacing=model_spacing(self.config, self.sampler.subjects),
                elapsed_s=self.elapsed, world_size=self.context.world_size,
            )
        self._save_state()
        mean = None if self.validation is None else self.validation["mean"]
        yield self._progress("done", metrics=mean)

    def _validate(self) -> dict[str, Any]:
        """Whole-volume metrics of the current network on the validation subjects (rank 0 computes)."""
        ddp.broadcast_buffers(self.model, self.context)
        result: dict[str, Any] | None = None
        if self.context.is_main:
            result = validate(
                ddp.unwrap(self.model), self.val_set, patch_size=self.config.patch_size,
                overlap=self.config.val_overlap, tta=self.config.val_tta, device=self.device,
                precision=self.config.precision,
                batch_size=2 * self.config.batch_size,  # no gradients: twice the training batch fits
            )
            result["step"] = self.step
        return ddp.broadcast_object(result, self.context)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _mean_loss(self) -> float:
        return ddp.mean_over_ranks(self.loss_sum, self.loss_count, self.context)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _progress(self, phase: str, loss: float | None = None, metrics: dict | None = None) -> TrainingProgress:
        return TrainingProgress(
            phase, self.step, self.total_steps, self.epoch, self.config.epochs,
            loss, self._lr(), metrics, round(self.elapsed, 3),
        )

    def _result(self, *, cancelled: bool) -> TrainingResult:
        ddp.broadcast_buffers(self.model, self.context)
        out = Path(self.config.out) if self.finished else None
        return TrainingResult(
            out, self.step, self.total_steps, cancelled, list(self.history), self.validation, ddp.unwrap(self.model),
            self.skipped_steps,
        )  # fmt: skip

    def _state_path(self) -> Path:
        return self.config.run_dir / STATE_FILE

    def _save_state(self) -> None:
        rngs = ddp.gather_object(rng_state(), self.context)
        if not self.context.is_main:
            return
        net = ddp.unwrap(self.model)
        save_state(self._state_path(), {
            "identity": self.config.identity(), "config": self.config.to_dict(),
            "model_config": self.model_config, "parent": self.parent,
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "loss_sum": self.loss_sum, "loss_count": self.loss_count, "elapsed": self.elapsed,
            "skipped_steps": self.skipped_steps, "epoch_skipped": self.epoch_skipped,
            "history": self.history, "validation": self.validation, "finished": self.finished,
            "world_size": self.context.world_size, "rng": rngs,
            "model": net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
        })

    def _maybe_resume(self) -> None:
        path = self._state_path()
        if not path.exists():
            return
        if not self.config.resume:
            raise InvalidInputError(
                f"{path} holds the state of an earlier run; pass --resume to continue it, or choose "
                "another --work-dir (or delete that folder) to start afresh"
            )
        state = load_state(path)
        _check_same_run(state, self.config, path)
        ddp.unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for key in ("step", "epoch", "batch_in_epoch", "loss_sum", "loss_count", "elapsed", "history", "validation"):
            setattr(self, key, state[key])
        self.skipped_steps, self.epoch_skipped = state.get("skipped_steps", 0), state.get("epoch_skipped", 0)
        self.finished = bool(state["finished"]) and self.step >= self.total_steps
        if state["world_size"] == self.context.world_size:
            restore_rng(state["rng"][self.context.rank])
        elif self.batch_in_epoch:  # the epoch's shards differ with the process count: redo the epoch
            warnings.warn(
                f"{path} was saved by {state['world_size']} process(es), this run has {self.context.world_size}: "
                f"epoch {self.epoch + 1} restarts from its first batch",
                stacklevel=2,
            )
            self.batch_in_epoch, self.loss_sum, self.loss_count, self.epoch_skipped = 0, 0.0, 0, 0


#: Run-identity fields added after states were first written, with the value those runs used.
_IDENTITY_DEFAULTS: dict[str, Any] = {"brain_patch_fraction": 0.0, "lesion_patch_fraction": 0.0, "spacing": None}


def _check_same_run(state: dict[str, Any], config: TrainingConfig, path: Path) -> None:
    saved = {**_IDENTITY_DEFAULTS, **state["identity"]}  # a field newer than the state: it ran with the default
    changed = {k: (v, saved.get(k)) for k, v in config.identity().items() if saved.get(k) != v}
    if changed:
        details = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (new, old) in changed.items())
        raise CheckpointError(
            f"cannot resume from {path}: the run's settings differ ({details}); use the original "
            "settings, or another --work-dir to start a new run"
        )
