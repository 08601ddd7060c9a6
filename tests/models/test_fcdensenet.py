"""The FC-DenseNet of Sec. III.A.2: shapes, a hand tally of the paper configuration's parameters, layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.models import build_model, default_patch_size, model_config, size_divisor
from napari_lesionseg.models.fcdensenet import DenseLayer, FCDenseNet3D

GROWTH, BOTTLENECK = 12, 48


def _unit(in_ch: int, out_ch: int, kernel: int) -> int:
    """Convolution without bias followed by batch norm (weight + bias)."""
    return in_ch * out_ch * kernel**3 + 2 * out_ch


def _block(in_ch: int, layers: int = 4) -> int:
    return sum(_unit(in_ch + i * GROWTH, BOTTLENECK, 1) + _unit(BOTTLENECK, GROWTH, 3) for i in range(layers))


def _paper_parameters(in_channels: int) -> int:
    """Hand tally of the paper network (growth 12, 4 layers, compression 0.5, 24 initial maps).

    Channels: stem 24; down blocks 24->72, 36->84, 42->90, 45->93, 46->94 with transitions to half
    (36, 42, 45, 46, 47); middle 47->95; up: transposed conv to half of the maps, concatenated with
    the skip: 47+94=141->189, 94+93=187->235, 117+90=207->255, 127+84=211->259, 129+72=201->249;
    multi-scale head 12 maps from each of 95, 189, 235, 255, 259; classifier 249 + 60 = 309 -> 1.
    """
    stem = _unit(in_channels, 24, 3) + 2 * _unit(24, 24, 3)
    blocks = sum(_block(c) for c in (24, 36, 42, 45, 46, 47, 141, 187, 207, 211, 201))
    downs = sum(_unit(i, o, 1) for i, o in ((72, 36), (84, 42), (90, 45), (93, 46), (94, 47)))
    ups = sum(_unit(i, o, 3) for i, o in ((95, 47), (189, 94), (235, 117), (255, 127), (259, 129)))
    head = sum(_unit(c, 12, 1) for c in (95, 189, 235, 255, 259))
    return stem + blocks + downs + ups + head + 309 + 1


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("in_channels", [4, 5, 1])
def test_paper_configuration_parameter_count_matches_hand_tally(in_channels):
    model = build_model(model_config("paper", in_channels=in_channels))
    assert _parameters(model) == _paper_parameters(in_channels)


@pytest.mark.parametrize(("overrides", "patch"), [({}, (64, 64, 64)), ({"input_stride2": True}, (128, 128, 128))])
def test_paper_configuration_shapes_at_full_patch_size(overrides, patch):
    with torch.device("meta"), torch.no_grad():  # shapes only: no memory, no arithmetic
        model = build_model(model_config("paper", in_channels=5, **overrides)).eval()
        out = model(torch.empty(2, 5, *patch))
    assert out.shape == (2, 1, *patch)


def test_paper_configuration_maps_a_patch_to_one_logit_channel():
    config = model_config("paper", in_channels=4)
    model = build_model(config).eval()
    assert size_divisor(config) == 32  # five poolings
    with torch.no_grad():
        out = model(torch.randn(1, 4, 32, 32, 32))  # the smallest patch with the same depth
    assert out.shape == (1, 1, 32, 32, 32)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_paper_configuration_full_64_cube_forward():
    config = model_config("paper", in_channels=5)
    model = build_model(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 5, *default_patch_size(config)))
    assert out.shape == (1, 1, 64, 64, 64)


def test_layout_follows_the_paper():
    model = build_model(model_config("paper"))
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    dense_layers = [m for m in model.modules() if isinstance(m, DenseLayer)]
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(norms) == len(convs) - 1  # BN after every convolution but the final classifier
    assert len(dense_layers) == 11 * 4  # 5 down + 1 middle + 5 up blocks of 4 layers
    assert len(dropouts) == len(dense_layers)  # dropout only after the 3x3x3 convolution in blocks
    for layer in dense_layers:
        bottleneck, conv3, dropout = layer
        assert bottleneck[0].kernel_size == (1, 1, 1) and bottleneck[0].out_channels == 4 * GROWTH
        assert conv3[0].kernel_size == (3, 3, 3) and conv3[0].out_channels == GROWTH
        assert dropout.p == pytest.approx(0.2)
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert len(ups) == 5 and all(m.kernel_size == (3, 3, 3) and m.stride == (2, 2, 2) for m in ups)
    assert model.classifier.kernel_size == (1, 1, 1) and model.classifier.out_channels == 1


def test_returns_logits_not_probabilities():
    model = build_model(model_config("compact", in_channels=2)).eval()
    with torch.no_grad():
        model.classifier.bias.fill_(10.0)
        out = model(torch.randn(1, 2, 16, 16, 16))
    assert out.max() > 1.0  # a sigmoid output could not exceed 1


def test_stride2_input_variant_keeps_the_input_size():
    config = model_config("paper", in_channels=3, input_stride2=True, dense_blocks_down=2, layers_per_block=1)
    model = build_model(config).eval()
    assert size_divisor(config) == 8
    assert isinstance(model.stem[0][0], nn.Conv3d) and model.stem[0][0].stride == (2, 2, 2)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 8, 16, 24))
    assert out.shape == (2, 1, 8, 16, 24)


def test_paper_stride2_preset_uses_128_patches():
    config = model_config("paper", input_stride2=True)
    assert default_patch_size(config) == (128, 128, 128)
    assert size_divisor(config) == 64


def test_multiscale_head_can_be_switched_off():
    with_head = _parameters(build_model(model_config("paper")))
    without = _parameters(build_model(model_config("paper", multiscale_head=False)))
    assert with_head - without == sum(_unit(c, 12, 1) for c in (95, 189, 235, 255, 259)) + 60  # + classifier inputs


def test_compact_preset_trains_with_finite_gradients():
    config = model_config("compact", in_channels=4)
    model = build_model(config).train()
    assert _parameters(model) < 1_000_000
    assert default_patch_size(config) == (32, 32, 32)
    out = model(torch.randn(2, 4, 16, 16, 16))
    torch.sigmoid(out).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_odd_patch_size_is_refused_with_the_divisor():
    model = build_model(model_config("compact", in_channels=1))
    with pytest.raises(LesionSegError, match="multiple of 16"):
        model(torch.zeros(1, 1, 30, 32, 32))


def test_one_voxel_bottleneck_network_runs():
    model = FCDenseNet3D(in_channels=1, dense_blocks_down=0, initial_convs=1, layers_per_block=1).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 1, 1, 1)).shape == (1, 1, 1, 1, 1)


def test_bad_config_values_are_refused():
    with pytest.raises(LesionSegError, match="compression"):
        build_model(model_config("paper", compression=0.0))
    with pytest.raises(LesionSegError, match="unknown keys"):
        model_config("paper", growth=12)
    with pytest.raises(LesionSegError, match="preset"):
        model_config("huge")
    with pytest.raises(LesionSegError, match="patch_size"):
        model_config("paper", patch_size=[48, 64, 64])
