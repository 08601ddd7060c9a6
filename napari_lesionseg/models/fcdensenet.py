"""3D patch-wise FC-DenseNet of Hashemi et al. 2018, Sec. III.A.2 (and 000, Sec. III.A.2).

The network returns **logits** ``(B, 1, D, H, W)``: the paper's final sigmoid is applied by the
losses and the inference engine, where it is numerically stable under fp16/bf16 autocast.

Layout (paper defaults in brackets, every number is a config value):

* optional 2x2x2 stride-2 input convolution for 128^3 patches (Sec. III.C) [off];
* ``initial_convs`` 3x3x3 convolutions with ``initial_features`` maps [3, 24];
* ``dense_blocks_down`` dense blocks on the way down [5], one in the middle, as many on the way up;
  each block has ``layers_per_block`` layers [4]: a 1x1x1 bottleneck to
  ``bottleneck_factor * growth_rate`` maps [4 * 12] then a 3x3x3 convolution adding
  ``growth_rate`` maps [12], followed by dropout [0.2]; a block returns its input concatenated
  with all the maps its layers added;
* transition down: 1x1x1 convolution to ``compression`` [0.5] of the maps, then 2x2x2 max pool;
* transition up: 3x3x3 transposed convolution of stride 2 to ``compression`` of the maps, then
  concatenation with the skip from the dense block of the same scale;
* a final 1x1x1 convolution to one lesion channel.

Every convolution (transposed ones included) is followed by batch normalisation and ReLU, except
the final classifier. Choices the paper leaves open: ``initial_features = 2 * growth_rate``
(DenseNet-BC), bottleneck width ``4 * growth_rate`` (DenseNet-BC), compression also applied at
transition up (the paper: "dimension reduction of 0.5 is applied at transition layers"), and with
the stride-2 input convolution a 2x2x2 stride-2 transposed convolution before the classifier so
that the output has the input's size.

Multi-scale head (``multiscale_head``, on in the paper preset): Sec. III.A.2 says "prior to
proceeding to the main classifier, results of all dense blocks are upsampled using deconvolutional
layers ... the results are concatenated and passed through the main classifier" (the DenseSeg
design the network is based on). The down-path blocks already reach the classifier through the
skip concatenations, so we read "all dense blocks" as the blocks of the expanding side at coarser
scales (the middle block and every up block but the last). Each is projected by a 1x1x1
convolution (+ BN + ReLU) to ``multiscale_features`` maps and upsampled to the last block's
resolution by trilinear interpolation, i.e. a transposed convolution with a fixed
linear-interpolation kernel (learned kernels of size 2^5 per axis would add millions of
parameters); the upsampled maps are concatenated with the last block's output.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_lesionseg import constants
from napari_lesionseg.errors import LesionSegError

__all__ = ["DEFAULT_CONFIG", "FCDenseNet3D"]

#: The paper's configuration (Sec. III.A.2); `models.model_config("paper")` returns a copy.
DEFAULT_CONFIG: dict[str, Any] = {
    "architecture": "fcdensenet",
    "in_channels": len(constants.CORE_MODALITIES),
    "input_stride2": False,
    "initial_convs": constants.INITIAL_CONVS,
    "initial_features": 2 * constants.GROWTH_RATE,
    "dense_blocks_down": constants.DENSE_BLOCKS_DOWN,
    "layers_per_block": constants.LAYERS_PER_BLOCK,
    "growth_rate": constants.GROWTH_RATE,
    "bottleneck_factor": 4,
    "compression": constants.COMPRESSION,
    "dropout": constants.DROPOUT,
    "multiscale_head": True,
    "multiscale_features": constants.GROWTH_RATE,
}


def _conv_bn_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm3d(channels), nn.ReLU(inplace=True))


def _conv(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return _conv_bn_relu(nn.Conv3d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), out_ch)


def _compressed(channels: int, compression: float) -> int:
    return max(1, int(math.floor(channels * compression)))


class DenseLayer(nn.Sequential):
    """1x1x1 bottleneck, 3x3x3 convolution adding `growth_rate` maps, dropout."""

    def __init__(self, in_ch: int, growth_rate: int, bottleneck: int, dropout: float) -> None:
        super().__init__(_conv(in_ch, bottleneck, 1), _conv(bottleneck, growth_rate, 3), nn.Dropout(dropout))


class DenseBlock(nn.Module):
    """Densely connected layers; returns the input concatenated with every layer's new maps."""

    def __init__(self, in_ch: int, n_layers: int, growth_rate: int, bottleneck: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_ch + i * growth_rate, growth_rate, bottleneck, dropout) for i in range(n_layers)
        )
        self.out_channels = in_ch + n_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitionDown(nn.Sequential):
    """1x1x1 convolution with compression, then 2x2x2 max pooling."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(_conv(in_ch, out_ch, 1), nn.MaxPool3d(2))


class TransitionUp(nn.Sequential):
    """3x3x3 transposed convolution of stride 2 (doubles every axis exactly)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        up = nn.ConvTranspose3d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=False)
        super().__init__(*_conv_bn_relu(up, out_ch))


class FCDenseNet3D(nn.Module):
    """The 3D patch-wise FC-DenseNet; takes ``(B, C, D, H, W)``, returns logits ``(B, 1, D, H, W)``.

    Args:
        in_channels: number of input modalities.
        input_stride2: add the 2x2x2 stride-2 input convolution used for 128^3 patches.
        initial_convs: number of initial 3x3x3 convolutions.
        initial_features: feature maps of the initial convolutions.
        dense_blocks_down: dense blocks on the contracting path (= number of poolings).
        layers_per_block: layers in every dense block.
        growth_rate: maps added by each dense layer.
        bottleneck_factor: bottleneck width as a multiple of the growth rate.
        compression: fraction of maps kept by transition layers.
        dropout: dropout rate after the 3x3x3 convolutions inside dense blocks.
        multiscale_head: concatenate upsampled coarse decoder blocks before the classifier.
        multiscale_features: maps each coarse block contributes to the multi-scale head.
    """

    def __init__(
        self,
        in_channels: int = DEFAULT_CONFIG["in_channels"],
        input_stride2: bool = False,
        initial_convs: int = constants.INITIAL_CONVS,
        initial_features: int = DEFAULT_CONFIG["initial_features"],
        dense_blocks_down: int = constants.DENSE_BLOCKS_DOWN,
        layers_per_block: int = constants.LAYERS_PER_BLOCK,
        growth_rate: int = constants.GROWTH_RATE,
        bottleneck_factor: int = 4,
        compression: float = constants.COMPRESSION,
        dropout: float = constants.DROPOUT,
        multiscale_head: bool = True,
        multiscale_features: int = constants.GROWTH_RATE,
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, initial_convs=initial_convs, initial_features=initial_features,
                        layers_per_block=layers_per_block, growth_rate=growth_rate,
                        bottleneck_factor=bottleneck_factor, multiscale_features=multiscale_features)
        if dense_blocks_down < 0 or not 0.0 < compression <= 1.0 or not 0.0 <= dropout < 1.0:
            raise LesionSegError(
                f"FC-DenseNet config: dense_blocks_down={dense_blocks_down}, compression={compression}, "
                f"dropout={dropout}; expected dense_blocks_down >= 0, 0 < compression <= 1, 0 <= dropout < 1"
            )
        self.divisor = 2 ** (dense_blocks_down + int(input_stride2))

        def block(in_ch: int) -> DenseBlock:
            return DenseBlock(in_ch, layers_per_block, growth_rate, bottleneck_factor * growth_rate, dropout)

        stem: list[nn.Module] = []
        channels = in_channels
        if input_stride2:
            stem.append(_conv_bn_relu(nn.Conv3d(channels, initial_features, 2, stride=2, bias=False), initial_features))
            channels = initial_features
        for _ in range(initial_convs):
            stem.append(_conv(channels, initial_features, 3))
            channels = initial_features
        self.stem = nn.Sequential(*stem)

        self.down_blocks = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        skip_channels = []
        for _ in range(dense_blocks_down):
            self.down_blocks.append(block(channels))
            channels = self.down_blocks[-1].out_channels
            skip_channels.append(channels)
            self.transitions_down.append(TransitionDown(channels, _compressed(channels, compression)))
            channels = _compressed(channels, compression)

        self.middle = block(channels)
        channels = self.middle.out_channels
        coarse_channels = [channels]

        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for skip in reversed(skip_channels):
            self.transitions_up.append(TransitionUp(channels, _compressed(channels, compression)))
            self.up_blocks.append(block(_compressed(channels, compression) + skip))
            channels = self.up_blocks[-1].out_channels
            coarse_channels.append(channels)
        coarse_channels.pop()  # the last block is at full resolution: it feeds the head directly

        self.multiscale = nn.ModuleList()
        if multiscale_head:
            self.multiscale.extend(_conv(c, multiscale_features, 1) for c in coarse_channels)
            channels += multiscale_features * len(coarse_channels)

        self.output_up: nn.Module = nn.Identity()
        if input_stride2:
            up = nn.ConvTranspose3d(channels, _compressed(channels, compression), 2, stride=2, bias=False)
            self.output_up = _conv_bn_relu(up, _compressed(channels, compression))
            channels = _compressed(channels, compression)
        self.classifier = nn.Conv3d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return lesion logits with the input's spatial size."""
        _check_input(x, self.divisor)
        x = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.transitions_down):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        coarse = [x]
        for up, block, skip in zip(self.transitions_up, self.up_blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
            coarse.append(x)
        if len(self.multiscale):
            size = x.shape[2:]
            upsampled = [
                F.interpolate(project(feat), size=size, mode="trilinear", align_corners=False)
                for project, feat in zip(self.multiscale, coarse[:-1])
            ]
            x = torch.cat([x, *upsampled], dim=1)
        return self.classifier(self.output_up(x))


def _check_positive(**values: int) -> None:
    bad = {name: value for name, value in values.items() if int(value) < 1}
    if bad:
        raise LesionSegError(f"FC-DenseNet config: {bad} must be positive integers")


def _check_input(x: torch.Tensor, divisor: int) -> None:
    if x.ndim != 5:
        raise LesionSegError(f"network input has shape {tuple(x.shape)}; expected (B, C, D, H, W)")
    if any(size % divisor for size in x.shape[2:]):
        raise LesionSegError(
            f"network input has spatial size {tuple(x.shape[2:])}; every axis must be a multiple of {divisor} "
            "(models.size_divisor(config)): pad the volume or pick another patch size"
        )
