"""Precision and memory format: resolution, the forced-off fallback, the fast path's accuracy, the model left as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET

from napari_lesionseg.engine.precision import (
    model_memory_format,
    native_bfloat16,
    precision_label,
    resolve_precision,
    without_native_bfloat16,
)
from napari_lesionseg.engine.run import run_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.models import build_model, model_config

CPU = torch.device("cpu")
#: Largest and mean probability change bfloat16 autocast may cause on the small case below (measured:
#: at most 2e-4, mean 1e-4, over five seeds). bfloat16 keeps 8 significant bits (relative rounding
#: 2**-9), the sigmoid's slope is at most 1/4: a few roundings through the tiny network stay far
#: below these bounds, while a wrong cast or an overflow would not.
MAX_DIFFERENCE, MEAN_DIFFERENCE = 0.005, 0.0005


def _fcdensenet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_config("compact", in_channels=2, **TINY_FCDENSENET))


def _stack(shape=(2, 16, 20, 12), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _settings(**kwargs) -> InferenceSettings:
    return InferenceSettings(**{"patch_size": (8, 8, 8), "tta": "paper", "device": "cpu", "batch_size": 2, **kwargs})


class TestResolution:
    def test_auto_on_the_cpu_follows_native_bfloat16(self):
        expected = torch.bfloat16 if native_bfloat16() else torch.float32
        assert resolve_precision("auto", CPU) == expected
        assert resolve_precision("auto", "cpu") == expected

    def test_without_native_bfloat16_auto_falls_back_to_float32(self):
        with without_native_bfloat16():
            assert not native_bfloat16()
            assert resolve_precision("auto", CPU) == torch.float32
            assert precision_label("cpu") == "float32"
        assert resolve_precision("auto", CPU) == (torch.bfloat16 if native_bfloat16() else torch.float32)

    def test_forced_precisions_are_kept(self):
        assert resolve_precision("float32", CPU) == torch.float32
        assert resolve_precision("bfloat16", CPU) == torch.bfloat16
        with without_native_bfloat16():  # asked for explicitly: emulated rather than refused
            assert resolve_precision("bfloat16", CPU) == torch.bfloat16
            assert precision_label("cpu", "bfloat16") == "bfloat16 (emulated)"

    def test_auto_on_cuda_is_float16(self):
        assert resolve_precision("auto", torch.device("cuda")) == torch.float16
        assert resolve_precision("float32", torch.device("cuda")) == torch.float32

    def test_label_names_what_runs(self):
        assert precision_label("cpu", "float32") == "float32"
        if native_bfloat16():
            assert precision_label("cpu") == "bfloat16 (native)"

    @pytest.mark.parametrize("precision", ["half", "fp32", ""])
    def test_unknown_precision_is_a_clear_error(self, precision):
        with pytest.raises(InvalidInputError, match="precision must be one of auto, float32"):
            InferenceSettings(precision=precision)


class TestEngine:
    def test_forced_off_auto_runs_float32_and_equals_float32(self):
        net, stack = _fcdensenet().eval(), _stack()
        with without_native_bfloat16():
            auto = run_inference(net, stack, _settings(precision="auto"))
        plain = run_inference(net, stack, _settings(precision="float32"))
        assert auto.precision == plain.precision == "float32"
        np.testing.assert_array_equal(auto.probability, plain.probability)

    def test_bfloat16_stays_within_the_bound_of_float32(self):
        net, stack = _fcdensenet().eval(), _stack()
        fast = run_inference(net, stack, _settings(precision="bfloat16"))
        plain = run_inference(net, stack, _settings(precision="float32"))
        assert fast.precision == "bfloat16" and fast.probability.dtype == np.float32
        difference = np.abs(fast.probability - plain.probability)
        assert 0 < difference.max() <= MAX_DIFFERENCE  # 0 would mean bfloat16 never ran
        assert difference.mean() <= MEAN_DIFFERENCE

    def test_channels_last_float32_equals_a_contiguous_forward(self):
        net, stack = _fcdensenet().eval(), _stack((2, 8, 8, 8))
        result = run_inference(net, stack, _settings(precision="float32", tta="none"))
        with torch.inference_mode():
            expected = torch.sigmoid(net(torch.from_numpy(stack)[None]))[0, 0].numpy()
        np.testing.assert_allclose(result.probability, expected, atol=1e-5)

    def test_the_model_is_left_in_its_memory_format_and_mode(self):
        net = _fcdensenet().train()
        run_inference(net, _stack(), _settings())
        weights = [p for p in net.parameters() if p.ndim == 5]
        assert weights and all(p.is_contiguous() for p in weights) and net.training
        net.to(memory_format=torch.channels_last_3d)
        run_inference(net, _stack(), _settings())
        assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in weights)

    def test_memory_format_context_keeps_the_parameter_objects(self):
        net = _fcdensenet()
        before = list(net.parameters())
        with model_memory_format(net, torch.channels_last_3d):
            assert all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in before if p.ndim == 5)
        assert all(a is b for a, b in zip(before, net.parameters()))
        assert all(p.is_contiguous() for p in net.parameters())
