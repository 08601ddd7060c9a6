"""The inference form of a network equals the network in eval mode, and leaves the network itself alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.models import fused as fused_module
from napari_lesionseg.models.fused import FusedConv, SubvoxelHead, fused_for_inference


def _with_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` with batch-norm statistics and affine terms far from their defaults, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator))
    return model.eval()


def _inputs(channels: int, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, size, generator=torch.Generator().manual_seed(1))


CONFIGS = {
    "compact (stride-2 head)": model_config("compact", in_channels=4),
    "compact without the multi-scale head": model_config("compact", in_channels=2, multiscale_head=False),
    "without the stride-2 input": model_config("compact", in_channels=3, input_stride2=False),
    "unet with batch norm": model_config("unet", in_channels=2, base_features=4, depth=2, batch_norm=True),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_the_inference_form_equals_the_network_in_eval_mode(config):
    model = _with_statistics(build_model(config))
    x = _inputs(config["in_channels"])
    with torch.inference_mode():
        expected = model(x)
        got = fused_for_inference(model)(x)
    scale = float(expected.abs().max())
    assert scale > 0.1  # the statistics make a non-trivial output
    assert torch.allclose(got, expected, atol=1e-4 * scale, rtol=1e-4)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_no_batch_norm_or_separate_relu_runs_after_a_convolution(config):
    network = fused_for_inference(_with_statistics(build_model(config)))
    assert not any(isinstance(m, nn.BatchNorm3d) for m in network.modules())
    for module in network.modules():
        if isinstance(module, nn.Sequential):
            kinds = [type(child) for child in module.children()]
            assert not any(a is FusedConv and b is nn.ReLU for a, b in zip(kinds, kinds[1:]))


def test_the_stride2_head_runs_at_input_resolution():
    network = fused_for_inference(_with_statistics(build_model(model_config("compact", in_channels=4))))
    assert isinstance(network.classifier, SubvoxelHead) and isinstance(network.output_up, nn.Identity)
    assert not any(isinstance(m, nn.ConvTranspose3d) and m.kernel_size == (2, 2, 2) for m in network.modules())


def test_the_network_itself_is_untouched():
    model = _with_statistics(build_model(model_config("compact", in_channels=4))).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    network = fused_for_inference(model)
    assert model.training and not network.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in network.parameters())
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())


def test_without_the_fused_op_the_plain_convolution_and_relu_give_the_same(monkeypatch):
    model = _with_statistics(build_model(model_config("compact", in_channels=4)))
    x = _inputs(4)
    network = fused_for_inference(model)
    with torch.inference_mode():
        fused = network(x)
        monkeypatch.setattr(fused_module, "_pointwise_ready", lambda x, dtype: False)
        plain = network(x)
    assert torch.allclose(fused, plain, atol=1e-4, rtol=1e-4)


def test_under_bfloat16_autocast_it_stays_close_to_float32():
    model = _with_statistics(build_model(model_config("compact", in_channels=4)))
    x = _inputs(4)
    network = fused_for_inference(model)
    with torch.inference_mode():
        reference = torch.sigmoid(model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = torch.sigmoid(network(x.contiguous(memory_format=torch.channels_last_3d)).float())
    assert fast.dtype == torch.float32 and fast.shape == reference.shape
    assert float((fast - reference).abs().max()) < 0.05


def test_a_network_with_non_finite_weights_is_not_fused_so_its_output_shows_it():
    model = _with_statistics(build_model(model_config("compact", in_channels=4)))
    with torch.no_grad():
        next(p for p in model.parameters() if p.ndim == 5).view(-1)[0] = float("nan")
    network = fused_for_inference(model)
    assert not any(isinstance(m, FusedConv) for m in network.modules())
    with torch.inference_mode():
        assert torch.isnan(network(_inputs(4))).any()


def test_float16_autocast_on_the_cpu_runs_the_plain_ops():
    model = _with_statistics(build_model(model_config("compact", in_channels=4)))
    x = _inputs(4, batch=1)
    network = fused_for_inference(model)
    with torch.inference_mode():
        reference = torch.sigmoid(model(x))
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                half = torch.sigmoid(network(x).float())
        except RuntimeError as err:  # a torch without float16 CPU kernels: nothing of ours to check
            pytest.skip(f"no float16 convolution on this CPU: {err}")
    assert float((half - reference).abs().max()) < 0.05
