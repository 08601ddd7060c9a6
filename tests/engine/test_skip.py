"""Background patches: not sent to the network, fused as 0, counted; the head's voxels as without skipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET, synthetic_anatomy

from napari_lesionseg.data.intensity import NORMALIZATION, normalize_stack, normalize_stack_with_foreground
from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.patches import make_grid
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.run import run_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.vocabulary import FUSION_MODES

PATCH = (8, 8, 8)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(model_config("compact", in_channels=2, **TINY_FCDENSENET)).eval()


def _raw_channels() -> list[np.ndarray]:
    """Two modalities of a head that fills the middle of the volume, with background before and behind it."""
    images, _ = synthetic_anatomy((20, 26, 18), seed=3)
    return [np.pad(images[m], ((0, 0), (8, 8), (0, 0)), constant_values=images[m].min()) for m in ("FLAIR", "T1w")]


def _head() -> tuple[np.ndarray, np.ndarray]:
    """The normalised stack and the foreground the normalisation found."""
    return normalize_stack_with_foreground(np.stack(_raw_channels()))


def _settings(**kwargs) -> InferenceSettings:
    options = {"patch_size": PATCH, "tta": "paper", "device": "cpu", "batch_size": 2, "precision": "float32"}
    return InferenceSettings(**{**options, "fusion": FUSION_MODES, **kwargs})


def _network_inputs(net: torch.nn.Module) -> list[int]:
    """Batch sizes of every call of `net` (a forward hook on the real network)."""
    calls: list[int] = []
    net.register_forward_hook(lambda _module, args, _output: calls.append(int(args[0].shape[0])))
    return calls


def test_the_normalisation_returns_the_foreground_it_used():
    stack, foreground = _head()
    assert foreground.any() and not foreground.all()
    assert np.all(stack[:, ~foreground] == 0)
    np.testing.assert_array_equal(stack, normalize_stack(np.stack([*_raw_channels()])))


def test_background_patches_are_not_predicted_and_are_counted():
    stack, foreground = _head()
    grid = make_grid(foreground.shape, PATCH, 0.5)
    touching = grid.touching(foreground)
    net = _net()
    calls = _network_inputs(net)
    result = run_inference(net, stack, _settings(), foreground=foreground)
    assert 0 < result.skipped == int((~touching).sum()) < len(grid)
    assert result.completed and result.done == len(grid)
    assert sum(calls) == 4 * int(touching.sum())  # four flips per predicted patch
    assert all(size == 4 * 2 for size in calls[:-1])  # the batches sent to the network stay full


def test_inside_the_head_the_result_equals_the_unskipped_run():
    stack, foreground = _head()
    net = _net()
    skipped = run_inference(net, stack, _settings(), foreground=foreground)
    full = run_inference(net, stack, _settings())
    assert full.skipped == 0
    # equal up to float32 rounding: the skipped patches are summed in another order
    for mode in FUSION_MODES:
        np.testing.assert_allclose(skipped.probabilities[mode][foreground], full.probabilities[mode][foreground], atol=1e-6)
        np.testing.assert_allclose(skipped.weight_sums[mode], full.weight_sums[mode], rtol=1e-6)
    np.testing.assert_allclose(skipped.uncertainty[foreground], full.uncertainty[foreground], atol=1e-6)


def test_skipped_patches_contribute_probability_zero():
    """Uniform fusion: skipping replaces each skipped patch's prediction by 0 and keeps its weight."""
    stack, foreground = _head()
    grid = make_grid(foreground.shape, PATCH, 0.5)
    net = _net()
    skipped = run_inference(net, stack, _settings(fusion=("uniform",)), foreground=foreground)
    full = run_inference(net, stack, _settings(fusion=("uniform",)))
    # what the full run predicted for a background patch: the network's answer to zeros, under the four flips
    background = run_inference(net, np.zeros((2, *PATCH), np.float32), _settings(fusion=("uniform",))).probability
    removed = np.zeros(foreground.shape, dtype=np.float64)
    for (z0, y0, x0), (z1, y1, x1) in grid.boxes()[~grid.touching(foreground)]:
        removed[z0:z1, y0:y1, x0:x1] += background[: z1 - z0, : y1 - y0, : x1 - x0]
    coverage = grid.coverage()
    np.testing.assert_allclose(skipped.probability, full.probability - removed / coverage, atol=1e-6)
    assert (removed > 0).any()


def test_priority_order_is_kept_with_skipping():
    stack, foreground = _head()
    settings = _settings(fusion=("spline",), priority_slice=10, priority_axis=0)
    events = []
    run_inference(_net(), stack, settings, foreground=foreground, callback=events.append)
    boxes = np.concatenate([event.patch_boxes for event in events])
    covering = (boxes[:, 0, 0] <= 10) & (10 < boxes[:, 1, 0])
    first_other = int(np.argmin(covering))
    assert covering[:first_other].all() and not covering[first_other:].any()


def test_predict_skips_what_the_normalisation_calls_background(tmp_path):
    config = model_config("compact", in_channels=2, **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        "tiny", config, "fbeta", 1.5, ["FLAIR", "T1w"], list(PATCH), normalization=dict(NORMALIZATION)
    )
    images = dict(zip(("FLAIR", "T1w"), _raw_channels()))
    checkpoint = (build_model(config), metadata)
    result = predict(images, checkpoint, _settings(fusion=("spline",)))
    _, foreground = _head()
    assert result.skipped == int((~make_grid(foreground.shape, PATCH, 0.5).touching(foreground)).sum()) > 0
    every_patch = predict(images, checkpoint, _settings(fusion=("spline",), skip_background=False))
    assert every_patch.skipped == 0
    np.testing.assert_allclose(every_patch.probability[foreground], result.probability[foreground], atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 6, 7), (20, 23, 17)])
@pytest.mark.parametrize("border", ["flush", "pad"])
def test_touching_matches_a_direct_count(shape, border):
    mask = np.random.default_rng(0).random(shape) > 0.998
    grid = make_grid(shape, PATCH, 0.5, border)
    direct = [mask[z0:z1, y0:y1, x0:x1].any() for (z0, y0, x0), (z1, y1, x1) in grid.boxes()]
    np.testing.assert_array_equal(grid.touching(mask), direct)
