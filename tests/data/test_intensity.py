"""The shared intensity normalisation: foreground, invariance, fallbacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import synthetic_anatomy

from napari_lesionseg.data.intensity import NORMALIZATION, foreground_mask, normalize_intensity, normalize_stack
from napari_lesionseg.errors import InvalidInputError


@pytest.fixture(scope="module")
def anatomy():
    images, mask = synthetic_anatomy((20, 24, 18), seed=3)
    return images, mask


def _head(anatomy) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in (20, 24, 18)], indexing="ij"))
    return np.sqrt(((grid / np.array([0.9, 0.95, 0.85])[:, None, None, None]) ** 2).sum(axis=0)) < 0.95


class TestForeground:
    def test_foreground_is_the_head_with_dark_ventricles_filled(self, anatomy):
        images, _ = anatomy
        foreground = foreground_mask(images["FLAIR"])
        head = _head(anatomy)
        assert (foreground == head).mean() > 0.97
        centre = tuple(n // 2 for n in foreground.shape)
        assert foreground[centre]  # inside the dark ventricles

    def test_small_bright_speck_outside_the_head_is_dropped(self, anatomy):
        image = anatomy[0]["T1w"].copy()
        image[0, 0, 0] = 5000.0
        assert not foreground_mask(image)[0, 0, 0]

    def test_constant_image_has_no_foreground(self):
        assert not foreground_mask(np.full((4, 5, 6), 3.0)).any()


class TestNormalizeIntensity:
    @pytest.mark.parametrize("modality", ["FLAIR", "T1w", "T2w", "PDw"])
    def test_invariant_to_affine_rescaling(self, anatomy, modality):
        image = anatomy[0][modality].astype(np.float64)
        np.testing.assert_allclose(normalize_intensity(image * 7 + 100), normalize_intensity(image), atol=1e-5)

    def test_invariant_for_float32_and_integer_inputs(self, anatomy):
        image = anatomy[0]["FLAIR"]
        scaled = (image * 7 + 100).astype(np.float32)
        np.testing.assert_allclose(normalize_intensity(scaled), normalize_intensity(image), atol=1e-4)
        as_int = np.round(image).astype(np.int16)
        np.testing.assert_allclose(normalize_intensity(as_int * 3 + 10), normalize_intensity(as_int), atol=1e-4)

    def test_foreground_is_zero_mean_unit_std_and_background_zero(self, anatomy):
        image = anatomy[0]["T2w"]
        out = normalize_intensity(image)
        foreground = foreground_mask(image)
        assert out.dtype == np.float32
        assert out[foreground].mean() == pytest.approx(0.0, abs=1e-5)
        assert out[foreground].std() == pytest.approx(1.0, abs=1e-4)
        assert np.all(out[~foreground] == 0.0)

    def test_outliers_are_clipped(self, anatomy):
        image = anatomy[0]["FLAIR"].copy()
        out_before = normalize_intensity(image)
        image[10, 12, 9] = 1e6  # one hot voxel inside the brain
        out_after = normalize_intensity(image)
        assert out_after[10, 12, 9] <= out_after.max() <= out_before.max() + 0.5

    def test_constant_image_becomes_background_without_nan(self):
        with pytest.warns(RuntimeWarning, match="no foreground"):
            out = normalize_intensity(np.full((4, 5, 6), 42.0))
        assert np.all(out == 0.0)

    def test_one_voxel_volume(self):
        with pytest.warns(RuntimeWarning):
            out = normalize_intensity(np.ones((1, 1, 1)))
        assert out.shape == (1, 1, 1) and np.isfinite(out).all()

    def test_constant_foreground_is_zero_not_nan(self):
        out = normalize_intensity(np.full((4, 5, 6), 7.0), foreground=np.ones((4, 5, 6), bool))
        assert np.all(out == 0.0)

    def test_nan_input_is_refused(self):
        image = np.ones((3, 3, 3))
        image[1, 1, 1] = np.nan
        with pytest.raises(InvalidInputError, match="1 NaN or infinite"):
            normalize_intensity(image)

    def test_wrong_shapes_are_refused(self):
        with pytest.raises(InvalidInputError, match="3-D"):
            normalize_intensity(np.ones((3, 3)))
        with pytest.raises(InvalidInputError, match="does not fit"):
            normalize_intensity(np.ones((3, 3, 3)), foreground=np.ones((3, 3, 2), bool))


class TestNormalizeStack:
    def test_stack_shares_one_foreground(self, anatomy):
        images, _ = anatomy
        stack = np.stack([images[m] for m in ("FLAIR", "T1w", "T2w", "PDw")])
        out = normalize_stack(stack)
        assert out.shape == stack.shape and out.dtype == np.float32
        background = np.all(out == 0.0, axis=0)
        for channel in out:
            assert np.all(channel[background] == 0.0)
        assert np.isfinite(out).all()

    def test_stack_is_invariant_per_channel_scaling(self, anatomy):
        images, _ = anatomy
        stack = np.stack([images[m].astype(np.float64) for m in ("FLAIR", "T1w")])
        rescaled = stack * np.array([7.0, 0.01])[:, None, None, None] + np.array([100.0, -3.0])[:, None, None, None]
        np.testing.assert_allclose(normalize_stack(rescaled), normalize_stack(stack), atol=1e-5)

    def test_all_constant_stack_is_background(self):
        with pytest.warns(RuntimeWarning):
            out = normalize_stack(np.ones((2, 3, 3, 3)))
        assert np.all(out == 0.0)

    def test_wrong_rank_is_refused(self):
        with pytest.raises(InvalidInputError, match=r"\(C, Z, Y, X\)"):
            normalize_stack(np.ones((3, 3, 3)))


def test_descriptor_is_json_serialisable():
    assert json.loads(json.dumps(NORMALIZATION)) == NORMALIZATION
    assert NORMALIZATION["method"] == "foreground_percentile_zscore"


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_hole_filling_matches_scipy(fraction):
    from scipy import ndimage

    from napari_lesionseg.data.intensity import _fill_holes

    mask = np.random.default_rng(4).random((9, 10, 11)) < fraction
    np.testing.assert_array_equal(_fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_channels_normalised_on_several_threads_equal_one_after_the_other():
    import torch

    from napari_lesionseg.data.intensity import normalize_stack_with_foreground

    images, _ = synthetic_anatomy((24, 26, 22), seed=7)
    stack = np.stack([images[name] for name in ("FLAIR", "T1w", "T2w")])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, one_foreground = normalize_stack_with_foreground(stack)
        torch.set_num_threads(3)
        several, several_foreground = normalize_stack_with_foreground(stack)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(several, one)
    np.testing.assert_array_equal(several_foreground, one_foreground)
    assert one_foreground.any() and one.std() > 0.1
