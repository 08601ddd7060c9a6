"""The inference engine with tiny real networks: MONAI equality, constant fields, progress, cancel, errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import requires_cuda
from monai.inferers import sliding_window_inference
from torch import nn

from napari_lesionseg._progress import CancelToken
from napari_lesionseg.engine.devices import resolve_device
from napari_lesionseg.engine.patches import augment, invert, make_grid, tta_variants
from napari_lesionseg.engine.run import iter_inference, run_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import InvalidInputError, LesionSegError
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.vocabulary import FUSION_MODES

PATCH = (8, 8, 8)


def _net(channels: int = 2, seed: int = 0) -> nn.Module:
    """A tiny position-sensitive network: two 3-D convolutions with random weights."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(channels, 3, 3, padding=1), nn.ReLU(), nn.Conv3d(3, 1, 3, padding=1))


def _constant_net(probability: float, channels: int = 2) -> nn.Module:
    """A 1x1x1 convolution that ignores its input and returns the logit of `probability`."""
    conv = nn.Conv3d(channels, 1, 1)
    nn.init.zeros_(conv.weight)
    nn.init.constant_(conv.bias, math.log(probability / (1 - probability)))
    return conv


class _LimitedMemoryNet(nn.Module):
    """A real network that raises CUDA's out-of-memory error for inputs larger than `max_inputs`."""

    def __init__(self, max_inputs: int) -> None:
        super().__init__()
        self.max_inputs = max_inputs
        self.conv = nn.Conv3d(2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.max_inputs:
            raise torch.cuda.OutOfMemoryError(f"cannot allocate {x.shape[0]} patches")
        return self.conv(x)


def _image(shape=(2, 13, 17, 11), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _settings(**kwargs) -> InferenceSettings:
    """float32 unless a test asks otherwise: these tests compare with float32 references at 1e-5."""
    options = {"patch_size": PATCH, "tta": "none", "device": "cpu", "batch_size": 4, "precision": "float32"}
    return InferenceSettings(**{**options, **kwargs})


class TestAgainstMonai:
    @pytest.mark.parametrize(("tta", "overlap"), [("none", 0.5), ("paper", 0.5), ("none", 0.25)])
    def test_uniform_fusion_equals_monai_constant_sliding_window(self, tta, overlap):
        net, image = _net().eval(), _image()
        result = run_inference(net, image, _settings(fusion="uniform", tta=tta, overlap=overlap))
        variants = tta_variants(tta)

        def predictor(x):
            return torch.stack([invert(torch.sigmoid(net(augment(x, v))), v) for v in variants]).mean(0)

        with torch.no_grad():
            expected = sliding_window_inference(torch.from_numpy(image)[None], PATCH, 3, predictor, overlap=overlap, mode="constant")
        np.testing.assert_allclose(result.probability, expected[0, 0].numpy(), atol=1e-5)


class TestFusion:
    @pytest.mark.parametrize("shape", [(2, 13, 17, 11), (2, 3, 5, 2), (2, 1, 1, 1)])
    @pytest.mark.parametrize("border", ["flush", "pad"])
    def test_every_mode_reproduces_a_constant_network(self, shape, border):
        settings = _settings(fusion=FUSION_MODES, tta="paper", border=border)
        result = run_inference(_constant_net(0.3), _image(shape), settings)
        for mode in FUSION_MODES:
            np.testing.assert_allclose(result.probabilities[mode], 0.3, rtol=1e-5, err_msg=mode)
            assert result.probabilities[mode].shape == shape[1:]
            assert result.weight_sums[mode].min() > 0
        assert result.uncertainty.max() < 1e-3
        assert not result.mask.any()

    def test_mask_is_probability_at_or_above_the_threshold(self):
        assert run_inference(_constant_net(0.7), _image(), _settings()).mask.all()
        result = run_inference(_net(), _image(), _settings(threshold=0.5))
        np.testing.assert_array_equal(result.mask, result.probability >= 0.5)

    def test_modes_fused_together_equal_separate_runs(self):
        net, image = _net(), _image()
        together = run_inference(net, image, _settings(fusion=("spline", "tiling"), tta="paper"))
        for mode in ("spline", "tiling"):
            alone = run_inference(net, image, _settings(fusion=mode, tta="paper"))
            np.testing.assert_allclose(together.probabilities[mode], alone.probability, atol=1e-6)

    def test_uncertainty_is_zero_without_spread_and_positive_with_it(self):
        result = run_inference(_net(), _image(), _settings(fusion="uniform", tta="paper"))
        assert result.uncertainty.max() > 1e-3
        single = run_inference(_net(), _image(), _settings(fusion="tiling", overlap=0.0))
        assert single.uncertainty.max() < 1e-3  # one prediction per voxel: no spread

    def test_eval_mode_during_the_run_and_training_mode_restored(self):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.Dropout3d(0.5), nn.Conv3d(4, 1, 1)).train()
        first = run_inference(net, _image(), _settings())
        second = run_inference(net, _image(), _settings())
        np.testing.assert_array_equal(first.probability, second.probability)  # no dropout at inference
        assert net.training


class TestProgressAndCancel:
    def test_events_arrive_in_order_with_the_right_totals(self):
        image = _image()
        grid = make_grid(image.shape[1:], PATCH, 0.5)
        events = []
        result = run_inference(_net(), image, _settings(batch_size=3), callback=events.append)
        assert [e.done for e in events] == [min(3 * (k + 1), len(grid)) for k in range(len(events))]
        assert {e.total for e in events} == {len(grid)} and events[-1].done == len(grid)
        assert result.completed and result.done == result.total == len(grid)
        for event in events:
            size = event.box[1] - event.box[0]
            assert event.partial.shape == tuple(size) and (event.box[0] >= 0).all()
            assert (event.box[1] <= image.shape[1:]).all() and len(event.patch_boxes) <= 3
        (z0, y0, x0), (z1, y1, x1) = events[-1].box
        np.testing.assert_array_equal(events[-1].partial, result.probability[z0:z1, y0:y1, x0:x1])

    def test_generator_yields_events_then_returns_the_result(self):
        events = iter_inference(_net(), _image(), _settings(batch_size=100))
        only = next(events)
        assert only.done == only.total == len(only.patch_boxes)
        with pytest.raises(StopIteration) as stop:
            next(events)
        assert stop.value.value.completed and stop.value.value.done == only.total

    def test_cancel_stops_within_one_batch(self):
        token = CancelToken()
        events = []

        def cancel_after_first(event):
            events.append(event)
            token.cancel()

        result = run_inference(_net(), _image(), _settings(batch_size=2), callback=cancel_after_first, cancel=token)
        assert len(events) == 1 and result.done == 2 and not result.completed
        covered = result.weight_sums["spline"] > 0
        assert covered.any() and not covered.all()
        assert (result.probability[~covered] == 0).all()

    def test_cancel_before_the_start_predicts_nothing(self):
        token = CancelToken()
        token.cancel()
        result = run_inference(_net(), _image(), _settings(), cancel=token)
        assert result.done == 0 and not result.probability.any()

    def test_priority_slice_fills_in_first(self):
        events = []
        run_inference(_net(), _image((2, 30, 9, 9)), _settings(batch_size=2, priority_slice=20), callback=events.append)
        first = events[0].patch_boxes
        assert ((first[:, 0, 0] <= 20) & (20 < first[:, 1, 0])).all()

    def test_no_partial_when_streaming_is_off(self):
        events = []
        run_inference(_net(), _image(), _settings(stream_partial=False), callback=events.append)
        assert all(e.partial is None for e in events)


class TestOutOfMemory:
    def test_batch_is_halved_until_it_fits(self):
        events, net = [], _LimitedMemoryNet(2)
        result = run_inference(net, _image(), _settings(batch_size=8), callback=events.append)
        reference = run_inference(net, _image(), _settings(batch_size=2))
        np.testing.assert_array_equal(result.probability, reference.probability)
        assert result.completed and len(result.messages) == 2
        assert "batches of 2 patches" in events[0].message

    def test_a_retried_batch_fuses_its_skipped_patches_once(self):
        image = _image()
        foreground = np.zeros(image.shape[1:], dtype=bool)
        foreground[:, :6] = True  # the patches beyond y = 6 hold no foreground
        net = _LimitedMemoryNet(2)
        result = run_inference(net, image, _settings(batch_size=8, fusion="uniform"), foreground=foreground)
        reference = run_inference(net, image, _settings(batch_size=2, fusion="uniform"), foreground=foreground)
        assert result.messages and 0 < result.skipped == reference.skipped
        np.testing.assert_allclose(result.weight_sums["uniform"], reference.weight_sums["uniform"], rtol=1e-6)
        np.testing.assert_allclose(result.probability, reference.probability, atol=1e-6)

    def test_one_patch_that_does_not_fit_is_a_clear_error(self):
        with pytest.raises(LesionSegError, match="out of memory.*--device cpu"):
            run_inference(_LimitedMemoryNet(0), _image(), _settings(batch_size=2))


class TestBadInput:
    def test_nan_in_the_input(self):
        image = _image()
        image[0, 3, 4, 5] = np.nan
        with pytest.raises(InvalidInputError, match="1 NaN"):
            run_inference(_net(), image, _settings())

    def test_wrong_number_of_channels(self):
        with pytest.raises(InvalidInputError, match="takes 2 modalities.*3 channels"):
            run_inference(_net(), _image((3, 9, 9, 9)), _settings())

    def test_patch_size_that_does_not_fit_the_poolings(self):
        with pytest.raises(InvalidInputError, match="multiple of 8"):
            run_inference(_net(), _image(), _settings(patch_size=(12, 8, 8)), size_divisor=8)

    @pytest.mark.parametrize("overlap", [-0.5, 1.0])
    def test_overlap_outside_zero_one(self, overlap):
        with pytest.raises(InvalidInputError, match="overlap"):
            _settings(overlap=overlap)

    def test_not_a_stack(self):
        with pytest.raises(InvalidInputError, match="C, Z, Y, X"):
            run_inference(_net(), _image()[0], _settings())

    def test_network_with_the_wrong_output(self):
        with pytest.raises(InvalidInputError, match="logits of shape"):
            run_inference(nn.Conv3d(2, 2, 1), _image(), _settings())

    @pytest.mark.parametrize("kwargs", [{"fusion": "median"}, {"tta": "all"}, {"batch_size": 0}, {"threshold": 2.0}])
    def test_bad_settings(self, kwargs):
        with pytest.raises(InvalidInputError):
            _settings(**kwargs)


class TestDevice:
    def test_cpu_and_auto(self):
        assert resolve_device("cpu").type == "cpu"
        assert resolve_device("auto").type in ("cuda", "mps", "cpu")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
    def test_cuda_without_cuda_is_a_clear_error(self):
        with pytest.raises(InvalidInputError, match="CUDA is not available"):
            resolve_device("cuda")


@requires_cuda
class TestOnCuda:
    """The engine on a real GPU: float16 autocast and the real out-of-memory path."""

    def test_autocast_on_the_gpu_matches_float32_on_the_cpu(self):
        torch.manual_seed(0)
        net = build_model(model_config("compact", in_channels=2)).eval()
        image = _image((2, 48, 40, 44))
        settings = {"patch_size": 32, "tta": "paper", "batch_size": 4}
        cpu = run_inference(net, image, InferenceSettings(device="cpu", precision="float32", **settings))
        gpu = run_inference(net, image, InferenceSettings(device="cuda", precision="float16", **settings))
        assert gpu.device.startswith("cuda") and not gpu.messages
        np.testing.assert_allclose(gpu.probability, cpu.probability, atol=1e-2)

    def test_a_batch_too_large_for_the_gpu_is_halved_until_it_fits(self):
        """The paper network on 64^3 patches: hundreds of patches per batch cannot fit any GPU."""
        torch.manual_seed(0)
        net = build_model(model_config("paper", in_channels=2)).eval()
        image = _image((2, 192, 192, 192))
        settings = InferenceSettings(patch_size=64, tta="paper", device="cuda", batch_size=1024, fusion=("spline",))
        result = run_inference(net, image, settings)
        assert result.completed and any("out of memory" in m for m in result.messages)
        reference = run_inference(net, image, dataclasses.replace(settings, batch_size=4))
        assert not reference.messages
        np.testing.assert_allclose(result.probability, reference.probability, atol=5e-3)  # float16 kernels differ with the batch size


class TestInferenceForm:
    """The engine predicts with the network's inference form (`models.fused`): the same result, the model left alone."""

    @staticmethod
    def _trained_like(seed: int = 3) -> nn.Module:
        torch.manual_seed(seed)
        model = build_model(model_config("compact", in_channels=2))
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.BatchNorm3d):
                    module.running_mean.uniform_(-1, 1)
                    module.running_var.uniform_(0.2, 2)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
            model.classifier.weight.mul_(20)  # logits spread over the sigmoid's slope, not near one value
        return model

    def test_fused_and_as_trained_give_the_same_probabilities_in_float32(self):
        model = self._trained_like()
        stack = np.random.default_rng(4).normal(size=(2, 40, 36, 33)).astype(np.float32)
        settings = InferenceSettings(patch_size=(32, 32, 32), tta="paper", device="cpu", precision="float32")
        fused = run_inference(model, stack, settings)
        plain = run_inference(model, stack, dataclasses.replace(settings, fused_network=False))
        assert float(fused.probability.std()) > 0.01  # a non-trivial output
        np.testing.assert_allclose(fused.probability, plain.probability, atol=2e-5)

    def test_the_model_keeps_its_mode_layout_and_weights(self):
        model = self._trained_like().train()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        stack = np.random.default_rng(5).normal(size=(2, 32, 32, 32)).astype(np.float32)
        run_inference(model, stack, InferenceSettings(patch_size=(32, 32, 32), tta="none", device="cpu"))
        assert model.training
        assert all(p.is_contiguous() for p in model.parameters())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
