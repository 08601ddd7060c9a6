"""What a training run is asked to do (`TrainingConfig`), what it reports, and what it returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_lesionseg.constants import (
    CORE_MODALITIES,
    LEARNING_RATE,
    LR_DECAY,
    LR_DECAY_EVERY,
    LR_INTERVAL_GROWTH,
    LR_INTERVAL_GROWTH_EVERY,
    MIN_LESION_VOXELS,
    OVERLAP,
)
from napari_lesionseg.engine.precision import check_precision
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import LOSSES

__all__ = ["LOSSES", "TrainingConfig", "TrainingProgress", "TrainingResult"]

#: Loss names `losses.make_loss` accepts; all but focal are similarity (overlap) losses.

#: Fields that must match for `resume` to continue a run (epochs and max_steps may grow).
_RUN_IDENTITY = (
    "modalities", "optional_modalities", "modality_dropout", "preset", "model", "loss", "beta", "loss_params", "patch_size",
    "patches_per_subject", "min_lesion_voxels", "brain_patch_fraction", "lesion_patch_fraction", "augment", "batch_size", "seed", "spacing",
    "lr", "lr_decay", "lr_decay_every", "lr_growth", "lr_growth_every",
)


@dataclass
class TrainingConfig:
    """One training run; every field has the paper's or the project's default.

    Args:
        data: training data folders (each a subject folder or a folder of subject folders).
        out: path of the checkpoint written at the end.
        val: held-out validation folders (whole-volume metrics after every `val_every` epochs).
        work_dir: folder for the resumable state and the history logs (default: beside `out`).
        name: checkpoint name (default: the stem of `out`).
        modalities: input channels, in order.
        spacing: isotropic voxel size (mm) the folders' subjects are resampled to before training, as
            inference resamples into the checkpoint's model space (None: each subject's own grid).
        optional_modalities: those the network learns to run without: a subject lacking one gets 0
            there (as inference feeds it), and modality dropout zeroes each in a patch with
            probability `modality_dropout`.
        preset: `models.model_config` preset ("paper", "compact", "unet").
        model: overrides passed to `models.model_config`.
        init_checkpoint: start from this checkpoint (fine-tuning); its network is used as-is.
        warm_start: `init_checkpoint` only starts a new network of its own (a family member with another
            loss or a longer schedule), not a fine-tune: the start is recorded in `training` but not as
            the checkpoint's `parent`, so it is listed and picked by `--beta` as its own.
        loss: one of `LOSSES`; beta is F-beta's beta; loss_params go to `losses.make_loss`.
        patch_size: (z, y, x) voxels (default: `models.default_patch_size`).
        patches_per_subject: patches drawn from every subject per epoch.
        min_lesion_voxels: lesion voxels a patch needs to be drawn (the paper's 10).
        brain_patch_fraction: share of each subject's patches centred anywhere in the head/brain,
            lesions or not (`training.sampling`; 0, the paper's selection only, by default).
        lesion_patch_fraction: share of each subject's patches centred near one lesion, every lesion
            equally likely whatever its size (`training.sampling`; 0 by default).
        augment: "paper" (identity + three 180-degree rotations), "mirror8" (all 8 flips) or "none".
        batch_size: patches per step and per process.
        epochs: passes over the sampled patches; max_steps stops earlier.
        lr, lr_decay, lr_decay_every, lr_growth, lr_growth_every: Adam and the paper's schedule.
        seed: fixes initial weights, patches and dropout (repeatable on CPU).
        device: "cpu", "cuda", "cuda:N", or None (CUDA when available).
        precision: network arithmetic, one of `vocabulary.PRECISIONS` (`engine.precision`): "auto" is
            bfloat16 autocast on a CPU with native bfloat16, float16 with gradient scaling on CUDA,
            else float32; losses are float32 whatever it is.
        val_every: validate every this many epochs (and always after the last).
        val_overlap, val_tta: whole-volume inference settings of validation (overlap, TTA set).
        save_every: write the resumable state every this many steps (and at epoch ends).
        resume: continue from the state in `work_dir` if there is one.
    """

    data: list[str]
    out: str
    val: list[str] = field(default_factory=list)
    work_dir: str | None = None
    name: str | None = None
    modalities: tuple[str, ...] = CORE_MODALITIES
    spacing: float | None = None
    optional_modalities: tuple[str, ...] = ()
    modality_dropout: float = 0.0
    preset: str = "compact"
    model: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None
    warm_start: bool = False
    loss: str = "fbeta"
    beta: float = 1.5
    loss_params: dict[str, Any] = field(default_factory=dict)
    patch_size: tuple[int, int, int] | None = None
    patches_per_subject: int = 8
    min_lesion_voxels: int = MIN_LESION_VOXELS
    brain_patch_fraction: float = 0.0
    lesion_patch_fraction: float = 0.0
    augment: str = "paper"
    batch_size: int = 2
    epochs: int = 100
    max_steps: int | None = None
    lr: float = LEARNING_RATE
    lr_decay: float = LR_DECAY
    lr_decay_every: int = LR_DECAY_EVERY
    lr_growth: float = LR_INTERVAL_GROWTH
    lr_growth_every: int = LR_INTERVAL_GROWTH_EVERY
    seed: int = 0
    device: str | None = None
    precision: str = "auto"
    val_every: int = 1
    val_overlap: float = OVERLAP
    val_tta: str = "paper"
    save_every: int = 50
    resume: bool = False

    def __post_init__(self) -> None:
        self.data = [str(p) for p in self.data]
        self.val = [str(p) for p in self.val]
        self.out = str(self.out)
        self.work_dir = None if self.work_dir is None else str(self.work_dir)
        self.init_checkpoint = None if self.init_checkpoint is None else str(self.init_checkpoint)
        self.modalities = tuple(self.modalities)
        self.optional_modalities = tuple(self.optional_modalities)
        if self.patch_size is not None:
            self.patch_size = tuple(int(p) for p in self.patch_size)
        self._check()

    def _check(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidInputError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}")
        positive = {
            "epochs": self.epochs, "batch_size": self.batch_size, "val_every": self.val_every,
            "save_every": self.save_every, "patches_per_subject": self.patches_per_subject,
        }
        for key, value in positive.items():
            if value < 1:
                raise InvalidInputError(f"training option {key} must be >= 1, got {value}")
        if self.max_steps is not None and self.max_steps < 0:
            raise InvalidInputError(f"max_steps must be >= 0, got {self.max_steps}")
        check_precision(self.precision)
        if not set(self.optional_modalities) < set(self.modalities):
            raise InvalidInputError(
                f"optional modalities {', '.join(self.optional_modalities)} must be some, not all, of the "
                f"modalities {', '.join(self.modalities)}"
            )
        if not 0.0 <= self.modality_dropout < 1.0:
            raise InvalidInputError(f"modality dropout must be in [0, 1), got {self.modality_dropout}")
        if not 0.0 <= self.brain_patch_fraction < 1.0:
            raise InvalidInputError(f"the share of brain patches must be in [0, 1), got {self.brain_patch_fraction}")
        if not 0.0 <= self.lesion_patch_fraction < 1.0 - self.brain_patch_fraction:
            raise InvalidInputError(
                f"the share of lesion-centred patches must be in [0, 1 - brain share), got {self.lesion_patch_fraction}"
            )
        if self.spacing is not None and not self.spacing > 0:
            raise InvalidInputError(f"the training spacing must be > 0 mm, got {self.spacing}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise InvalidInputError(f"need lr > 0 and 0 < lr_decay <= 1, got {self.lr} and {self.lr_decay}")
        if self.warm_start and not self.init_checkpoint:
            raise InvalidInputError("a warm start needs the checkpoint it starts from (--init)")

    @property
    def run_dir(self) -> Path:
        """The folder holding the resumable state and the history logs."""
        if self.work_dir:
            return Path(self.work_dir)
        out = Path(self.out)
        return out.with_name(f"{out.stem}_training")

    @property
    def checkpoint_name(self) -> str:
        """The name recorded in the checkpoint's metadata."""
        return self.name or Path(self.out).stem

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings), for the state file and the checkpoint metadata."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        return {key: self.to_dict()[key] for key in _RUN_IDENTITY}


@dataclass(frozen=True)
class TrainingProgress:
    """Reported after every step (phase "train"), each validation ("validate") and at the end ("done")."""

    phase: str
    step: int
    total_steps: int
    epoch: int
    epochs: int
    loss: float | None = None
    lr: float | None = None
    metrics: dict[str, float] | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class TrainingResult:
    """How a run ended: the checkpoint written (None if cancelled first), steps done, the history.

    `model` is the trained network itself (plain, not DDP-wrapped; in train mode) so that the app
    can use it without reading the checkpoint back. `skipped_steps` counts the steps whose
    gradients were not finite and were not applied (`training.steps`).
    """

    checkpoint: Path | None
    steps: int
    total_steps: int
    cancelled: bool
    history: list[dict[str, Any]]
    validation: dict[str, Any] | None = None
    model: Any = None
    skipped_steps: int = 0
