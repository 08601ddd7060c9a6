"""Prediction in the model's space: resampling there and back, identity at the model's spacing, warnings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET, make_affine, write_subject
from scipy import ndimage

from napari_lesionseg._progress import drain
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.intensity import NORMALIZATION, normalize_stack
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, load_checkpoint, save_checkpoint
from napari_lesionseg.engine.model_space import model_space, to_model, to_native
from napari_lesionseg.engine.predict import iter_predict, predict
from napari_lesionseg.engine.run import run_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import LesionSegWarning
from napari_lesionseg.models import build_model, model_config

SETTINGS = InferenceSettings(tta="none", device="cpu", fusion=("spline", "uniform"))


def _checkpoint(tmp_path, spacing=None, modalities=("FLAIR", "T1w"), optional=()):
    """A tiny network with random weights: these tests check geometry, not accuracy."""
    config = model_config("compact", in_channels=len(modalities), **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        name="tiny", model=config, loss="fbeta", beta=1.5, modalities=list(modalities), patch_size=[8, 8, 8],
        normalization=dict(NORMALIZATION), spacing=spacing, optional_modalities=list(optional),
    )  # fmt: skip
    return load_checkpoint(save_checkpoint(tmp_path / "tiny.pt", build_model(config), metadata))


def _native(shape=(40, 36, 12), spacing=(1.0, 1.0, 3.0), axcodes="LPS") -> Geometry:
    affine = make_affine(spacing, origin=(30.0, 20.0, -15.0), axcodes=axcodes)
    return Geometry.from_affine(affine, shape)


def _blobs(geometry: Geometry, radii_mm=(6.0, 4.5, 3.5)) -> np.ndarray:
    """A smooth lesion probability: Gaussian-edged balls at three places, in world millimetres."""
    index = np.indices(geometry.shape).reshape(3, -1)
    world = (geometry.canonical_affine[:3, :3] @ index + geometry.canonical_affine[:3, 3:]).T
    centre = world.mean(axis=0)
    probability = np.zeros(len(world))
    for offset, radius in zip(((0, 0, 0), (9, -7, 5), (-8, 8, -4)), radii_mm):
        distance = np.linalg.norm(world - centre - np.array(offset), axis=1)
        probability = np.maximum(probability, 1.0 / (1.0 + np.exp((distance - radius) / 1.0)))
    return probability.reshape(geometry.shape).astype(np.float32)


class TestModelSpaceGrid:
    def test_it_covers_the_native_field_of_view_at_the_model_spacing(self):
        native = _native()
        space = model_space(native, (2.0, 2.0, 2.0))
        assert space.resampled and space.spacing == pytest.approx((2.0, 2.0, 2.0))
        assert native.shape == (12, 36, 40) and native.spacing == pytest.approx((3.0, 1.0, 1.0))  # (S, P, L)
        assert space.geometry.shape == (18, 18, 20)  # 12 x 3 mm, 36 x 1 mm, 40 x 1 mm
        centre = lambda g: g.canonical_affine @ np.append((np.array(g.shape) - 1) / 2, 1)
        np.testing.assert_allclose(centre(space.geometry), centre(native), atol=1e-9)
        np.testing.assert_allclose(space.scale, (2.0 / 3.0, 2.0, 2.0))

    def test_a_stripped_scan_ringing_below_zero_keeps_its_brain_as_the_foreground(self):
        """The model grid reaches past the native field of view; that margin is background (0), not the ringing
        minimum, so the normalisation still finds the brain (a fill at -12 made the whole grid foreground)."""
        native = Geometry.from_affine(make_affine((1.0, 1.0, 1.0)), (62, 62, 62))
        image = np.zeros(native.shape, np.float32)
        brain = np.zeros(native.shape, bool)
        brain[10:51, 10:51, 10:51] = True
        image[brain] = 80.0 + np.random.default_rng(0).normal(0, 5, brain.sum()).astype(np.float32)
        edge = ndimage.binary_dilation(brain) & ~brain
        image[edge & (np.indices(native.shape)[0] % 4 == 0)] = -12.7  # spline ringing on part of the edge
        space = model_space(native, (1.5, 1.5, 1.5))
        assert space.geometry.shape == (42, 42, 42)  # 63 mm: its outer voxels lie beyond the native ones
        stack = to_model(image, native, space)[None]
        foreground = normalize_stack(stack)[0] != 0
        assert 0.2 < foreground.mean() < 0.35  # the 41 mm cube of brain in a 63 mm grid, not everything

    def test_a_smooth_probability_survives_the_round_trip(self):
        native = _native()
        space = model_space(native, (2.0, 2.0, 2.0))
        probability = _blobs(native)
        back = to_native(to_model(probability, native, space), space)
        assert back.shape == native.shape and back.dtype == np.float32
        assert np.abs(back - probability).mean() < 0.01 and np.abs(back - probability).max() < 0.25

    def test_a_masks_lesions_are_kept_by_the_round_trip(self):
        native = _native()
        space = model_space(native, (2.0, 2.0, 2.0))
        mask = _blobs(native) >= 0.5
        back = to_native(to_model(mask.astype(np.float32), native, space), space) >= 0.5
        labels, count = ndimage.label(mask)
        _, count_back = ndimage.label(back)
        assert count == count_back == 3
        for lesion in range(1, count + 1):
            inside = labels == lesion
            assert 2 * (inside & back).sum() / (inside.sum() + (back & ndimage.binary_dilation(inside, iterations=2)).sum()) > 0.8

    def test_the_model_spacing_is_nothing_to_do(self):
        native = _native(spacing=(2.0, 2.0, 2.0))
        space = model_space(native, (2.0, 2.0, 2.01))
        assert not space.resampled and space.geometry is native
        data = np.ones(native.shape, np.float32)
        assert to_model(data, native, space) is data and to_native(data, space) is data


class TestPredictInModelSpace:
    def test_spacing_that_matches_gives_the_run_of_the_native_grid_bit_for_bit(self, tmp_path):
        subject = load_subject(write_subject(tmp_path, shape=(14, 12, 10), modalities=("FLAIR", "T1w")))
        checkpoint = _checkpoint(tmp_path, spacing=[1.0, 1.0, 1.0])
        result = predict(subject, checkpoint, SETTINGS)
        direct = run_inference(checkpoint[0], normalize_stack(subject.stack(("FLAIR", "T1w"))), _with_patch(SETTINGS))
        for mode in ("spline", "uniform"):
            np.testing.assert_array_equal(result.probabilities[mode], direct.probabilities[mode])
            np.testing.assert_array_equal(result.weight_sums[mode], direct.weight_sums[mode])
        np.testing.assert_array_equal(result.mask, direct.mask)
        np.testing.assert_array_equal(result.uncertainty, direct.uncertainty)
        assert not result.model_space.resampled and result.model_space.geometry is subject.geometry
        assert "resample" not in result.timings

    def test_another_spacing_runs_in_model_space_and_comes_back_on_the_native_grid(self, tmp_path):
        affine = make_affine((1.0, 1.0, 3.0), axcodes="RAS")
        subject = load_subject(write_subject(tmp_path, shape=(20, 22, 7), affine=affine, modalities=("FLAIR", "T1w")))
        result = predict(subject, _checkpoint(tmp_path, spacing=[2.0, 2.0, 2.0]), SETTINGS)
        space = result.model_space
        assert space.resampled and result.grid.shape == space.geometry.shape == (11, 11, 10)
        assert result.probability.shape == result.mask.shape == result.uncertainty.shape == subject.geometry.shape
        assert result.weight_sums["spline"].shape == space.geometry.shape
        np.testing.assert_array_equal(result.mask, result.probability >= SETTINGS.threshold)
        assert "from 1x1x3 mm to 2x2x2 mm" in space.describe().replace(".00", "") and space.describe() in result.messages  # the file's axis order
        assert result.timings["resample"] >= 0

    def test_live_events_pasted_on_the_native_grid_build_the_final_probability(self, tmp_path):
        affine = make_affine((1.0, 0.8, 3.0), axcodes="LPS")
        subject = load_subject(write_subject(tmp_path, shape=(20, 22, 7), affine=affine, modalities=("FLAIR", "T1w")))
        settings = InferenceSettings(tta="none", device="cpu", batch_size=3, priority_slice=5)
        run = iter_predict(subject, _checkpoint(tmp_path, spacing=[2.0, 2.0, 2.0]), settings)
        live = np.zeros(subject.geometry.shape, np.float32)
        while True:
            try:
                event = next(run)
            except StopIteration as stop:
                result = stop.value
                break
            where = tuple(slice(int(a), int(b)) for a, b in zip(*event.box))
            assert event.partial.shape == live[where].shape
            assert (event.patch_boxes[:, 0] >= 0).all() and (event.patch_boxes[:, 1] <= subject.geometry.shape).all()
            live[where] = event.partial
        np.testing.assert_allclose(live, result.probability, atol=1e-5)

    def test_an_input_far_coarser_than_the_model_is_segmented_with_a_warning(self, tmp_path):
        affine = make_affine((1.0, 1.0, 8.0), axcodes="RAS")
        subject = load_subject(write_subject(tmp_path, shape=(18, 20, 4), affine=affine, modalities=("FLAIR", "T1w")))
        with pytest.warns(LesionSegWarning, match=r"more than 4x the model's .*cannot be resolved"):
            result = predict(subject, _checkpoint(tmp_path, spacing=[1.5, 1.5, 1.5]), SETTINGS)
        assert result.probability.shape == subject.geometry.shape

    def test_a_checkpoint_without_a_spacing_takes_the_inputs_with_a_warning(self, tmp_path):
        affine = make_affine((1.0, 1.0, 3.0), axcodes="RAS")
        subject = load_subject(write_subject(tmp_path, shape=(16, 12, 5), affine=affine, modalities=("FLAIR", "T1w")))
        with pytest.warns(LesionSegWarning, match="does not record the voxel size"):
            result = predict(subject, _checkpoint(tmp_path), SETTINGS)
        assert not result.model_space.resampled

    def test_training_spacing_is_used_for_files_that_only_record_it_there(self, tmp_path):
        model, metadata = _checkpoint(tmp_path)
        metadata.training["spacing"] = [2.0, 2.0, 2.0]
        subject = load_subject(write_subject(tmp_path, shape=(16, 12, 10), modalities=("FLAIR", "T1w")))
        result = predict(subject, (model, metadata), SETTINGS)
        assert result.model_space.resampled and result.grid.shape == (5, 6, 8)

    def test_a_missing_optional_modality_is_fed_as_background(self, tmp_path):
        subject = load_subject(write_subject(tmp_path, shape=(14, 12, 10), modalities=("FLAIR",)))
        checkpoint = _checkpoint(tmp_path, spacing=[1.0, 1.0, 1.0], optional=("T1w",))
        result = predict(subject, checkpoint, SETTINGS)
        flair = normalize_stack(subject.stack(("FLAIR",)))
        direct = run_inference(checkpoint[0], np.concatenate([flair, np.zeros_like(flair)]), _with_patch(SETTINGS))
        np.testing.assert_array_equal(result.probability, direct.probability)

    def test_layers_given_as_arrays_with_a_geometry_get_the_model_space(self, tmp_path):
        affine = make_affine((1.0, 1.0, 3.0), axcodes="RAS")
        subject = load_subject(write_subject(tmp_path, shape=(20, 22, 7), affine=affine, modalities=("FLAIR", "T1w")))
        checkpoint = _checkpoint(tmp_path, spacing=[2.0, 2.0, 2.0])
        arrays = {m: v.data for m, v in subject.images.items()}
        from_arrays = drain(iter_predict(arrays, checkpoint, SETTINGS, geometry=subject.geometry))
        from_subject = predict(subject, checkpoint, SETTINGS)
        assert from_arrays.model_space.resampled
        np.testing.assert_array_equal(from_arrays.probability, from_subject.probability)


def _with_patch(settings: InferenceSettings) -> InferenceSettings:
    import dataclasses

    return dataclasses.replace(settings, patch_size=(8, 8, 8))
