"""How a training run starts: its network (fresh or from a checkpoint), its patch size and its loss."""

from __future__ import annotations

from typing import Any

import torch

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training.config import TrainingConfig

__all__ = ["checked_patch_size", "configured_loss", "initial_model"]


def initial_model(config: TrainingConfig, device: torch.device) -> tuple[torch.nn.Module, dict, str | None]:
    """The network to train: from `init_checkpoint` (fine-tuning) or a fresh one from the preset."""
    if config.init_checkpoint:
        from napari_lesionseg.engine.checkpoints import load_checkpoint

        model, metadata = load_checkpoint(config.init_checkpoint, device=device)
        if list(config.modalities) != list(metadata.modalities):
            raise InvalidInputError(
                f"checkpoint {config.init_checkpoint} takes the modalities {', '.join(metadata.modalities)} but "
                f"the run uses {', '.join(config.modalities)}; pass --modalities {','.join(metadata.modalities)}"
            )
        return model.to(device), dict(metadata.model), metadata.name
    from napari_lesionseg.models import build_model, model_config

    model_cfg = model_config(config.preset, in_channels=len(config.modalities), **config.model)
    return build_model(model_cfg).to(device), model_cfg, None


def checked_patch_size(config: TrainingConfig, model_config: dict) -> tuple[int, int, int]:
    from napari_lesionseg.models import default_patch_size, size_divisor

    size = tuple(config.patch_size or default_patch_size(model_config))
    divisor = size_divisor(model_config)
    if len(size) != 3 or any(s < 1 or s % divisor for s in size):
        raise InvalidInputError(
            f"patch size {size} does not fit the network: every axis must be a positive multiple of {divisor}"
        )
    return size  # type: ignore[return-value]


def configured_loss(config: TrainingConfig) -> Any:
    """The configured `losses.LossFunction` (F-beta takes the config's beta)."""
    from napari_lesionseg.training.losses import make_loss

    params = dict(config.loss_params)
    if config.loss == "fbeta":
        params.setdefault("beta", config.beta)
    return make_loss(config.loss, **params)
