"""White-matter texture: known noise gives known numbers; blur raises the neighbour correlation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_lesionseg.evaluation.texture import white_matter_texture

SHAPE = (40, 40, 40)


def _noisy(sd: float, blur: float = 0.0, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)
    if blur:
        noise = ndi.gaussian_filter(noise, blur)
        noise /= noise.std()
    return (100.0 * (1.0 + sd * noise)).astype(np.float32)


def test_white_noise_is_uncorrelated_and_its_size_is_relative_to_the_median():
    texture = white_matter_texture(_noisy(0.05), np.ones(SHAPE, bool))
    # The high-pass keeps most of white noise (a sigma-2 blur removes under 5 % of its variance).
    assert texture.relative_sd == pytest.approx(0.05, rel=0.08)
    assert all(abs(c) < 0.1 for c in texture.neighbour_correlation)


def test_blurred_noise_is_correlated_between_neighbours():
    sharp = white_matter_texture(_noisy(0.05), np.ones(SHAPE, bool))
    smooth = white_matter_texture(_noisy(0.05, blur=1.0), np.ones(SHAPE, bool))
    assert min(smooth.neighbour_correlation) > 0.5 > max(sharp.neighbour_correlation)


def test_correlation_along_one_axis_only():
    noise = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    image = 100.0 + 5.0 * ndi.gaussian_filter1d(noise, 1.5, axis=0)
    z, y, x = white_matter_texture(image, np.ones(SHAPE, bool)).neighbour_correlation
    assert z > 0.5 and abs(y) < 0.1 and abs(x) < 0.1


def test_only_voxels_inside_the_eroded_white_matter_count():
    image = _noisy(0.01)
    wm = np.zeros(SHAPE, bool)
    wm[5:35, 5:35, 5:20] = True
    image[:, :, 24:] = 300.0 * _noisy(0.5, seed=2)[:, :, 24:] / 100.0  # another tissue, far off the mask
    assert white_matter_texture(image, wm).relative_sd == pytest.approx(0.01, rel=0.15)


def test_a_mask_too_thin_to_erode_gives_nan():
    wm = np.zeros(SHAPE, bool)
    wm[:, :, 10:13] = True
    texture = white_matter_texture(_noisy(0.05), wm)
    assert np.isnan(texture.relative_sd) and all(np.isnan(texture.neighbour_correlation))
