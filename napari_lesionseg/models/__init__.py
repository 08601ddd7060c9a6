"""Networks: the 3D patch-wise FC-DenseNet (001, Sec. III.A.2) and the 3D U-Net (000, Sec. III.A.1).

Every network takes ``(B, C, D, H, W)`` float32 and returns **logits** ``(B, 1, D, H, W)``: the
paper's final sigmoid is applied by the losses and the inference engine (numerically stable under
fp16/bf16 autocast). A network is described by a JSON-serialisable config dict (stored in every
checkpoint) and built with `build_model`.

Presets (`model_config(preset)`):

* ``"paper"``: the FC-DenseNet exactly as in Sec. III.A.2 (growth 12, 4 layers per block,
  5 + 1 + 5 dense blocks, compression 0.5, dropout 0.2, multi-scale head), 64^3 patches.
  With ``input_stride2=True`` it is the 128^3-patch variant (Sec. III.C), patches 128^3.
* ``"compact"``: the same building blocks (growth 12, bottlenecks, dropout 0.2, compression 0.5,
  multi-scale head) with 3 + 1 + 3 dense blocks of 2 layers, one initial convolution of 16 maps
  and the paper's 2x2x2 stride-2 input convolution (Sec. III.C), which puts the dense blocks at
  half resolution, for 32^3 patches: about 0.7 M parameters and 1.8 GFLOPs per patch, so that a
  training step on 2 patches takes about half a second on 2 CPU cores.
* ``"unet"``: the 3D U-Net (32 base features, 3 poolings), full-volume input; its default patch
  size is the MSSEG registered volume, 128 x 224 x 256 (000, Sec. IV.A).

Example:
    >>> import torch
    >>> config = model_config("compact", in_channels=4)
    >>> model = build_model(config)
    >>> logits = model(torch.zeros(1, 4, *default_patch_size(config)))  # (1, 1, 32, 32, 32)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from napari_lesionseg import constants
from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.models.fcdensenet import DEFAULT_CONFIG as FCDENSENET_DEFAULTS
from napari_lesionseg.models.fcdensenet import FCDenseNet3D
from napari_lesionseg.models.unet import DEFAULT_CONFIG as UNET_DEFAULTS
from napari_lesionseg.models.unet import UNet3D

__all__ = [
    "ARCHITECTURES",
    "PRESETS",
    "FCDenseNet3D",
    "UNet3D",
    "build_model",
    "default_patch_size",
    "model_config",
    "size_divisor",
]

#: Architecture name -> (network class, default config).
ARCHITECTURES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "fcdensenet": (FCDenseNet3D, FCDENSENET_DEFAULTS),
    "unet": (UNet3D, UNET_DEFAULTS),
}

#: Preset name -> config (without in_channels, which `model_config` sets).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**FCDENSENET_DEFAULTS, "patch_size": list(constants.PATCH_SIZE)},
    "compact": {
        **FCDENSENET_DEFAULTS,
        "input_stride2": True,
        "initial_convs": 1,
        "initial_features": 16,
        "dense_blocks_down": 3,
        "layers_per_block": 2,
        "patch_size": [32, 32, 32],
    },
    "unet": {**UNET_DEFAULTS, "patch_size": [128, 224, 256]},
}

#: Config keys every architecture accepts besides its own: the recommended patch size.
_COMMON_KEYS = ("architecture", "patch_size")


def model_config(preset: str = "paper", in_channels: int = len(constants.CORE_MODALITIES), **overrides: Any) -> dict:
    """Return a JSON-serialisable network config from a preset, with `overrides` applied.

    Args:
        preset: ``"paper"``, ``"compact"`` or ``"unet"``.
        in_channels: number of input modalities.
        **overrides: any config key of the preset's architecture (e.g. ``growth_rate=16``), or
            ``patch_size``. Switching ``input_stride2`` on the paper preset also switches its patch
            size between 64^3 and 128^3 (Sec. III.E.2) unless ``patch_size`` is given.
    """
    if preset not in PRESETS:
        raise LesionSegError(f"unknown model preset {preset!r}; expected one of {', '.join(PRESETS)}")
    config = {**copy.deepcopy(PRESETS[preset]), "in_channels": int(in_channels), **overrides}
    if "input_stride2" in overrides and "patch_size" not in overrides and preset == "paper":
        config["patch_size"] = [128 if config["input_stride2"] else 64] * 3
    _validate(config)
    return config


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """Build the network a config describes (missing keys take the architecture's defaults)."""
    cls, defaults = _architecture(config)
    _validate(config)
    kwargs = {key: value for key, value in {**defaults, **config}.items() if key not in _COMMON_KEYS}
    return cls(**kwargs)


def size_divisor(config: Mapping[str, Any]) -> int:
    """Return the number every patch axis must be a multiple of: 2 ** poolings (x2 with stride-2 input)."""
    _, defaults = _architecture(config)
    full = {**defaults, **config}
    if full["architecture"] == "unet":
        return 2 ** int(full["depth"])
    return 2 ** (int(full["dense_blocks_down"]) + int(bool(full["input_stride2"])))


def default_patch_size(config: Mapping[str, Any]) -> tuple[int, int, int]:
    """Return the config's recommended patch size (its ``patch_size``, else the paper's 64^3 or 128^3)."""
    if "patch_size" in config:
        return tuple(int(size) for size in config["patch_size"])  # type: ignore[return-value]
    if config.get("architecture") == "unet":
        return tuple(PRESETS["unet"]["patch_size"])  # type: ignore[return-value]
    return (128, 128, 128) if config.get("input_stride2") else constants.PATCH_SIZE


def _architecture(config: Mapping[str, Any]) -> tuple[type[nn.Module], dict[str, Any]]:
    name = config.get("architecture")
    if name not in ARCHITECTURES:
        raise LesionSegError(f"network config has architecture {name!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def _validate(config: Mapping[str, Any]) -> None:
    _, defaults = _architecture(config)
    unknown = sorted(set(config) - set(defaults) - set(_COMMON_KEYS))
    if unknown:
        raise LesionSegError(
            f"{config['architecture']} config has unknown keys {unknown}; expected keys from {sorted(defaults)}"
        )
    if "patch_size" in config:
        patch, divisor = config["patch_size"], size_divisor(config)
        if len(patch) != 3 or any(int(size) < 1 or int(size) % divisor for size in patch):
            raise LesionSegError(
                f"{config['architecture']} config has patch_size {list(patch)}; expected three positive multiples "
                f"of {divisor}"
            )
