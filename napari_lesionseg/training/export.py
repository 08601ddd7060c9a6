"""The checkpoint a run writes: the trained network with the metadata that inference and review need."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_lesionseg.training.config import TrainingConfig
from napari_lesionseg.training.data import TrainingSubject

__all__ = ["learning_spacing", "model_spacing", "training_record", "write_checkpoint"]


def learning_spacing(config: TrainingConfig) -> tuple[float, float, float] | None:
    """Where folder subjects are resampled before training: the run's `spacing`, else the voxel size of the
    checkpoint it starts from (a continued network keeps the scale it learned at), else None (each
    subject's own grid)."""
    if config.spacing is not None:
        return (float(config.spacing),) * 3
    if config.init_checkpoint:
        from napari_lesionseg.engine.checkpoints import read_metadata
        from napari_lesionseg.engine.requirements import trained_spacing

        return trained_spacing(read_metadata(config.init_checkpoint))
    return None


def model_spacing(config: TrainingConfig, subjects: Sequence[TrainingSubject]) -> list[float] | None:
    """The voxel size the network learns at: `learning_spacing`, else the training subjects' median."""
    spacing = learning_spacing(config)
    if spacing is not None:
        return list(spacing)
    if not subjects:
        return None
    return [round(float(s), 4) for s in np.median([subject.spacing for subject in subjects], axis=0)]


def training_record(config: TrainingConfig, *, steps: int, elapsed_s: float, world_size: int) -> dict[str, Any]:
    """How the network was trained: the full config plus steps, time, processes and machine."""
    return {
        **config.to_dict(),
        "steps": int(steps),
        "elapsed_s": round(float(elapsed_s), 1),
        "world_size": int(world_size),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}, "
        f"{os.cpu_count()} CPUs" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "torch": torch.__version__,
    }


def write_checkpoint(
    out: str | os.PathLike[str],
    model: torch.nn.Module,
    config: TrainingConfig,
    model_config: dict[str, Any],
    *,
    validation: dict[str, Any] | None,
    parent: str | None,
    spacing: Sequence[float] | None = None,
    steps: int,
    elapsed_s: float,
    world_size: int,
) -> Path:
    """Save `model` to `out` (atomically) with complete `checkpoints.CheckpointMetadata`."""
    from napari_lesionseg.data.intensity import NORMALIZATION
    from napari_lesionseg.engine.checkpoints import CheckpointMetadata, save_checkpoint

    metadata = CheckpointMetadata(
        name=config.checkpoint_name,
        model=dict(model_config),
        loss=config.loss,
        beta=float(config.beta) if config.loss == "fbeta" else None,
        modalities=list(config.modalities),
        optional_modalities=list(config.optional_modalities),
        patch_size=list(config.patch_size or ()),
        normalization=dict(NORMALIZATION),
        training=training_record(config, steps=steps, elapsed_s=elapsed_s, world_size=world_size),
        validation=validation or {},
        parent=parent,
        spacing=None if spacing is None else [float(v) for v in spacing],
    )
    save_checkpoint(out, model, metadata)
    return Path(out)
