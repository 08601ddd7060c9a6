"""A training step with non-finite gradients is skipped and counted; the process is left as it was found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import requires_cuda, synthetic_anatomy, write_subject

from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.training import TrainingConfig, TrainingSubject, iter_training, subject_from_arrays, train
from napari_lesionseg.training.state import restored_process_state
from napari_lesionseg.training.steps import apply_gradients, gradients_are_finite

TINY = {
    "growth_rate": 2, "initial_features": 4, "dense_blocks_down": 1, "layers_per_block": 1,
    "multiscale_features": 2, "bottleneck_factor": 1, "input_stride2": False,
}  # fmt: skip
MODALITIES = ("FLAIR", "T1w", "T2w", "PDw")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config("compact", in_channels=2, patch_size=[8, 8, 8], **TINY)).train()


def _backward(net: torch.nn.Module, scale: float = 1.0, scaler: torch.amp.GradScaler | None = None) -> None:
    """A real loss's gradients, multiplied by `scale` (NaN or inf gives the gradients an oneDNN race can give)."""
    logits = net(torch.randn(2, 2, 8, 8, 8, generator=torch.Generator().manual_seed(1)))
    loss = torch.sigmoid(logits.float()).mean() * scale
    (loss if scaler is None else scaler.scale(loss)).backward()


def _weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


class TestApplyGradients:
    def test_finite_gradients_are_applied(self):
        net = _net()
        optimizer, before = torch.optim.Adam(net.parameters(), lr=1e-2), _weights(net)
        _backward(net)
        assert gradients_are_finite(optimizer)
        assert apply_gradients(optimizer, torch.amp.GradScaler("cpu", enabled=False))
        assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))

    @pytest.mark.parametrize("bad", [float("nan"), float("inf")])
    def test_non_finite_gradients_are_not_applied(self, bad):
        net = _net()
        optimizer, before = torch.optim.Adam(net.parameters(), lr=1e-2), _weights(net)
        _backward(net, scale=bad)
        assert not gradients_are_finite(optimizer)
        assert not apply_gradients(optimizer, torch.amp.GradScaler("cpu", enabled=False))
        assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))
        assert not optimizer.state  # Adam's moments were never touched

    def test_with_a_gradient_scaler_the_step_is_skipped_and_the_scale_lowered(self):
        net = _net()
        optimizer, before = torch.optim.Adam(net.parameters(), lr=1e-2), _weights(net)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        _backward(net, scale=float("nan"), scaler=scaler)
        assert not apply_gradients(optimizer, scaler)
        assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))
        assert scaler.get_scale() < 2.0**8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("steps")
    for seed in (1, 2):
        write_subject(root / "train", name=f"sub-0{seed}", shape=(16, 16, 16), seed=seed)
    return root


def _config(root, tmp_path, **overrides) -> TrainingConfig:
    options = {
        "data": [root / "train"], "out": tmp_path / "model.pt", "model": TINY, "patch_size": (8, 8, 8),
        "patches_per_subject": 2, "batch_size": 2, "epochs": 2, "val_tta": "none", "seed": 3,
    }  # fmt: skip
    return TrainingConfig(**{**options, **overrides})


def test_the_loop_skips_and_counts_steps_with_non_finite_gradients(data, tmp_path):
    """Intensities near float32's limit overflow in the first convolution: every gradient is NaN, no step is applied."""
    images, mask = synthetic_anatomy((16, 16, 16), seed=5)
    normalised = subject_from_arrays(np.stack([images[m] for m in MODALITIES]), mask, (1.0, 1.0, 1.0), "overflow")
    scale = np.float32(0.9 * np.finfo(np.float32).max) / np.abs(normalised.image).max()
    overflowing = TrainingSubject("overflow", normalised.image * scale, normalised.mask, normalised.spacing)
    assert np.isfinite(overflowing.image).all()
    config = _config(data, tmp_path, data=[], precision="float32")
    torch.manual_seed(config.seed)
    initial = {name: p.detach().clone() for name, p in _fresh_model(config).named_parameters()}
    result = train(config, subjects=[overflowing])
    assert result.steps == 2 and result.skipped_steps == 2  # one batch of two patches per epoch
    assert [row["skipped_steps"] for row in result.history] == [1, 1]
    for name, weight in result.model.named_parameters():  # the weights (batch-norm statistics move in a forward pass)
        assert torch.equal(weight, initial[name]), name


def _fresh_model(config: TrainingConfig) -> torch.nn.Module:
    """The network a fresh run of `config` starts from (the loop seeds with the config's seed first)."""
    return build_model(model_config(config.preset, in_channels=len(config.modalities), **config.model))


def test_a_healthy_run_skips_nothing_and_reports_it(data, tmp_path):
    result = train(_config(data, tmp_path, precision="float32"))
    assert result.skipped_steps == 0 and all(row["skipped_steps"] == 0 for row in result.history)


def test_the_loop_restores_the_generators_and_the_model_layout(data, tmp_path):
    torch.manual_seed(1234)
    expected = torch.get_rng_state()
    result = train(_config(data, tmp_path))
    assert torch.equal(torch.get_rng_state(), expected)
    assert all(p.is_contiguous() for p in result.model.parameters())


def test_a_loop_closed_early_restores_the_generators(data, tmp_path):
    torch.manual_seed(99)
    expected = torch.get_rng_state()
    events = iter_training(_config(data, tmp_path))
    next(events)
    events.close()
    assert torch.equal(torch.get_rng_state(), expected)


def test_restored_process_state_puts_back_the_seed_and_cudnn_benchmark():
    flag = torch.backends.cudnn.benchmark
    torch.manual_seed(7)
    expected = torch.get_rng_state()
    with restored_process_state():
        torch.backends.cudnn.benchmark = not flag
        torch.manual_seed(0)
        torch.rand(3)
    assert torch.backends.cudnn.benchmark == flag
    assert torch.equal(torch.get_rng_state(), expected)


@requires_cuda
def test_the_loop_on_cuda_restores_cudnn_benchmark(data, tmp_path):
    torch.backends.cudnn.benchmark = False
    train(_config(data, tmp_path, device="cuda", max_steps=2))
    assert torch.backends.cudnn.benchmark is False
