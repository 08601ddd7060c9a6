"""Parameter counts and FLOPs per patch of the networks, for the README and `lesionseg bench`.

FLOPs are counted as 2 x the multiply-accumulates of every convolution and transposed
convolution in one forward pass of one patch (batch 1); normalisation, activations, pooling and
interpolation are left out (they are a few per cent). The count runs the network on PyTorch's
"meta" device, so it allocates no memory and takes milliseconds even for 128^3 patches.

Run ``python -m napari_lesionseg.models.summary`` to print the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from napari_lesionseg.models import PRESETS, build_model, default_patch_size, model_config

__all__ = ["count_parameters", "flops_per_patch", "summary_table"]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Return the number of (trainable) parameters of `model`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_patch(config: Mapping[str, Any], patch_size: Sequence[int] | None = None) -> int:
    """Return the convolution FLOPs (2 x multiply-accumulates) of one forward pass of one patch.

    Args:
        config: network config (`models.model_config`).
        patch_size: ``(D, H, W)``; defaults to `models.default_patch_size(config)`.
    """
    patch = tuple(patch_size) if patch_size is not None else default_patch_size(config)
    with torch.device("meta"):
        model = _without_norms(build_model(config).eval())
        x = torch.empty(1, int(config["in_channels"]), *patch)
    macs = [0]

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        macs[0] += _conv_macs(module, inputs[0], output)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return 2 * macs[0]


def summary_table(in_channels: int = 4) -> str:
    """Return a Markdown table of every preset: parameters, patch size, GFLOPs per patch."""
    rows = [
        "| preset | architecture | input | parameters | patch | GFLOPs per patch |",
        "|---|---|---|---:|---|---:|",
    ]
    variants = [(name, model_config(name, in_channels)) for name in PRESETS]
    variants.append(("paper, input_stride2", model_config("paper", in_channels, input_stride2=True)))
    for name, config in variants:
        patch = default_patch_size(config)
        with torch.device("meta"):
            params = count_parameters(build_model(config))
        gflops = flops_per_patch(config, patch) / 1e9
        rows.append(
            f"| {name} | {config['architecture']} | {in_channels} channels | {params:,} | "
            f"{'x'.join(map(str, patch))} | {gflops:,.1f} |"
        )
    return "\n".join(rows)


def _without_norms(model: nn.Module) -> nn.Module:
    """Replace batch norms (not counted, and slow on the meta device) by identities; shapes are unchanged."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm3d):
                setattr(module, name, nn.Identity())
    return model


def _conv_macs(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    kernel = int(torch.tensor(module.kernel_size).prod())
    if isinstance(module, nn.ConvTranspose3d):
        # every input element is scattered through out_channels / groups kernels
        return x.numel() * (module.out_channels // module.groups) * kernel
    return out.numel() * (module.in_channels // module.groups) * kernel


if __name__ == "__main__":  # pragma: no cover
    print(summary_table())
