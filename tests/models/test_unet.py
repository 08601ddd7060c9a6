"""The 3D U-Net of 000, Sec. III.A.1: shapes, a hand tally of parameters, layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.models import UNet3D, build_model, default_patch_size, model_config, size_divisor


def _conv(in_ch: int, out_ch: int, kernel: int) -> int:
    return in_ch * out_ch * kernel**3 + out_ch  # weights + bias (no batch norm)


def _preset_parameters(in_channels: int) -> int:
    """Hand tally: levels of 32, 64, 128, 256 maps, two 3x3x3 convolutions each, 2x2x2 up-convolutions."""
    encoder = (
        _conv(in_channels, 32, 3) + _conv(32, 32, 3)
        + _conv(32, 64, 3) + _conv(64, 64, 3)
        + _conv(64, 128, 3) + _conv(128, 128, 3)
        + _conv(128, 256, 3) + _conv(256, 256, 3)
    )
    decoder = (
        _conv(256, 128, 2) + _conv(256, 128, 3) + _conv(128, 128, 3)
        + _conv(128, 64, 2) + _conv(128, 64, 3) + _conv(64, 64, 3)
        + _conv(64, 32, 2) + _conv(64, 32, 3) + _conv(32, 32, 3)
    )
    return encoder + decoder + _conv(32, 1, 1)


@pytest.mark.parametrize("in_channels", [4, 5])
def test_preset_parameter_count_matches_hand_tally(in_channels):
    model = build_model(model_config("unet", in_channels=in_channels))
    assert sum(p.numel() for p in model.parameters()) == _preset_parameters(in_channels)


def test_preset_maps_a_volume_to_one_logit_channel():
    config = model_config("unet", in_channels=4)
    assert size_divisor(config) == 8
    assert default_patch_size(config) == (128, 224, 256)  # the MSSEG registered volume (full-volume input)
    model = build_model(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 8, 16, 8))
    assert out.shape == (1, 1, 8, 16, 8)


def test_layout_follows_the_paper():
    model = build_model(model_config("unet"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose3d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool3d)]
    assert all(m.kernel_size == (3, 3, 3) and m.padding == (1, 1, 1) for m in convs[:-1])  # padded 3x3x3
    assert all(m.kernel_size == (2, 2, 2) and m.stride == (2, 2, 2) for m in ups)
    assert len(pools) == 1 and pools[0].kernel_size == 2 and pools[0].stride == 2
    assert [m.out_channels for m in convs[:8:2]] == [32, 64, 128, 256]  # doubled after every pooling
    assert not any(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert convs[-1].kernel_size == (1, 1, 1) and convs[-1].out_channels == 1


def test_non_cubic_input_and_batch_norm_option():
    model = build_model(model_config("unet", in_channels=2, base_features=4, depth=2, batch_norm=True)).train()
    out = model(torch.randn(2, 2, 4, 8, 12))
    assert out.shape == (2, 1, 4, 8, 12)
    out.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_decoder_concatenates_the_skip_of_its_level():
    model = UNet3D(in_channels=1, base_features=4, depth=2)
    assert [decoder[0].in_channels for decoder in model.decoders] == [2 * 8, 2 * 4]  # up-conv maps + skip maps


def test_input_not_a_multiple_of_the_divisor_is_refused():
    model = build_model(model_config("unet", in_channels=1, base_features=2))
    with pytest.raises(LesionSegError, match="multiples of 8"):
        model(torch.zeros(1, 1, 8, 8, 12))


def test_depth_override_must_fit_the_patch_size():
    with pytest.raises(LesionSegError, match="patch_size"):
        model_config("unet", depth=6)
    config = model_config("unet", depth=6, patch_size=[128, 256, 256])
    assert size_divisor(config) == 64
