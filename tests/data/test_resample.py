"""Explicit resampling onto another grid."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_affine, reorient

from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.resample import background_level, resample_to_grid, resample_volume
from napari_lesionseg.data.volumes import Volume


def _geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), shape=(6, 7, 5), axcodes="RAS") -> Geometry:
    return Geometry.from_affine(make_affine(spacing, origin, axcodes), shape)


def test_same_grid_is_identity():
    geometry = _geometry()
    data = np.random.default_rng(0).random(geometry.shape).astype(np.float32)
    np.testing.assert_allclose(resample_to_grid(data, geometry, geometry), data, atol=1e-6)


def test_same_grid_stored_in_another_order_is_identity():
    ras = _geometry(spacing=(0.9, 1.1, 2.0))
    _, lps_affine = reorient(np.zeros((6, 7, 5)), ras.affine, "LPS")
    lps = Geometry.from_affine(lps_affine, (6, 7, 5))
    data = np.random.default_rng(1).random(ras.shape).astype(np.float32)
    np.testing.assert_allclose(resample_to_grid(data, lps, ras), data, atol=1e-6)


def test_whole_voxel_shift_moves_values():
    source = _geometry()
    target = _geometry(origin=(0.0, 0.0, 1.0))  # one voxel further superior
    data = np.random.default_rng(2).random(source.shape).astype(np.float32)
    out = resample_to_grid(data, source, target)
    np.testing.assert_allclose(out[:-1], data[1:], atol=1e-6)  # canonical axis 0 is S
    assert np.all(out[-1] == np.float32(background_level(data)))  # outside the source field of view


def test_outside_the_field_of_view_is_background_not_the_ringing_below_it():
    """A skull-stripped scan, 0 outside the brain, rings slightly below 0 at its edge: the fill is 0, not that."""
    source = _geometry(shape=(20, 20, 20))
    data = np.zeros(source.shape, np.float32)
    data[5:15, 5:15, 5:15] = 100.0
    data[4, 5:10, 5:15] = -12.0  # part of the edge rings below 0: 0.6 % of the voxels
    target = _geometry(origin=(-2.0, -2.0, -2.0), shape=(24, 24, 24))  # 2 voxels beyond the source on every side
    out = resample_to_grid(data, source, target)
    assert background_level(data) == 0.0 and out[0, 0, 0] == 0.0 and out.min() == -12.0


def test_linear_interpolation_halfway():
    source = _geometry(shape=(1, 1, 2))  # two slices along S
    target = _geometry(origin=(0.0, 0.0, 0.5), shape=(1, 1, 1))
    data = np.array([0.0, 10.0], dtype=np.float32).reshape(2, 1, 1)
    assert resample_to_grid(data, source, target)[0, 0, 0] == pytest.approx(5.0)


def test_mask_nearest_stays_binary_on_a_finer_grid():
    coarse = _geometry(spacing=(2.0, 2.0, 2.0), shape=(4, 4, 4))
    fine = _geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), shape=(8, 8, 8))
    mask = np.zeros(coarse.shape, np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    volume = Volume(mask, coarse, "mask")
    out = resample_volume(volume, fine, kind="mask")
    assert out.data.dtype == np.uint8 and set(np.unique(out.data)) == {0, 1}
    assert out.geometry is fine and out.name == "mask"
    assert out.data.sum() > mask.sum()


def test_image_becomes_float32():
    geometry = _geometry()
    out = resample_volume(Volume(np.ones(geometry.shape, np.int16), geometry, "x"), geometry)
    assert out.data.dtype == np.float32


def test_bad_arguments_are_programming_errors():
    geometry = _geometry()
    with pytest.raises(ValueError, match="order"):
        resample_to_grid(np.zeros(geometry.shape), geometry, geometry, order=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not fit"):
        resample_to_grid(np.zeros((2, 2, 2)), geometry, geometry)
    with pytest.raises(ValueError, match="kind"):
        resample_volume(Volume(np.zeros(geometry.shape), geometry, "x"), geometry, kind="labels")  # type: ignore[arg-type]
