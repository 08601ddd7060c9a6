"""3D U-Net of Hashemi et al. (000, Sec. III.A.1; 001, Sec. III.A.1), for full-volume input.

The network returns **logits** ``(B, 1, D, H, W)``; the sigmoid is applied by the losses and the
inference engine. The paper ends with a two-class softmax; one sigmoid channel is the same model
(the softmax of two logits is the sigmoid of their difference) and matches the FC-DenseNet.

Contracting path: per level two padded 3x3x3 convolutions, each followed by ReLU, then 2x2x2 max
pooling of stride 2; the number of features doubles after each pooling. Expanding path: a 2x2x2
transposed convolution of stride 2 (halving the features), concatenation with the contracting
path's maps of the same level, two padded 3x3x3 convolutions with ReLU. A final 1x1x1 convolution
gives the lesion logit.

The paper's figure with the widths is not in the text: we use ``base_features = 32`` and
``depth = 3`` poolings as in Cicek et al.'s 3D U-Net, which the paper builds on; both are config
values. The text mentions no normalisation, so ``batch_norm`` is off by default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from napari_lesionseg import constants
from napari_lesionseg.errors import LesionSegError

__all__ = ["DEFAULT_CONFIG", "UNet3D"]

#: Defaults of the U-Net preset; `models.model_config("unet")` returns a copy.
DEFAULT_CONFIG: dict[str, Any] = {
    "architecture": "unet",
    "in_channels": len(constants.CORE_MODALITIES),
    "base_features": 32,
    "depth": 3,
    "convs_per_level": 2,
    "batch_norm": False,
}


def _level(in_ch: int, out_ch: int, n_convs: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers.append(nn.Conv3d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm3d(out_ch))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """The 3D U-Net; takes ``(B, C, D, H, W)`` with D, H, W multiples of ``2**depth``.

    Args:
        in_channels: number of input modalities.
        base_features: feature maps at full resolution (doubled after every pooling).
        depth: number of max poolings.
        convs_per_level: 3x3x3 convolutions per level (two in the paper).
        batch_norm: add batch normalisation after each convolution.
    """

    def __init__(
        self,
        in_channels: int = DEFAULT_CONFIG["in_channels"],
        base_features: int = 32,
        depth: int = 3,
        convs_per_level: int = 2,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if min(in_channels, base_features, convs_per_level) < 1 or depth < 0:
            raise LesionSegError(
                f"U-Net config: in_channels={in_channels}, base_features={base_features}, depth={depth}, "
                f"convs_per_level={convs_per_level}; expected positive values (depth >= 0)"
            )
        self.divisor = 2**depth
        widths = [base_features * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoders.append(_level(channels, width, convs_per_level, batch_norm))
            channels = width
        self.pool = nn.MaxPool3d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose3d(channels, width, 2, stride=2))
            self.decoders.append(_level(2 * width, width, convs_per_level, batch_norm))
            channels = width
        self.classifier = nn.Conv3d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return lesion logits with the input's spatial size."""
        if x.ndim != 5 or any(size % self.divisor for size in x.shape[2:]):
            raise LesionSegError(
                f"U-Net input has shape {tuple(x.shape)}; expected (B, C, D, H, W) with D, H, W multiples of "
                f"{self.divisor} (models.size_divisor(config)): pad the volume"
            )
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.classifier(x)
