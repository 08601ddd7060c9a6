"""Phantom acquisitions: skull stripping and 2-D thick slices (block averages), on disk and via `lesionseg sample`."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_lesionseg.cli import main
from napari_lesionseg.data.phantom import Phantom, acquire, make_phantom, skull_strip, thick_slices
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.errors import InvalidInputError

SPACING = 2.0


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(seed=21, spacing=SPACING, lesion_load="high")


def test_skull_stripping_keeps_the_brain_and_zeroes_the_rest(phantom):
    stripped = skull_strip(phantom)
    brain = phantom.tissues["wm"] >= 0.9
    outside = phantom.tissues["wm"] + phantom.tissues["gm"] + phantom.tissues["csf"] < 0.01
    for modality, image in stripped.images.items():
        original = phantom.images[modality]
        np.testing.assert_array_equal(image[brain], original[brain])
        scalp = outside & (original > 0.5 * np.median(original[brain]))
        assert scalp.sum() > 1000 and not image[outside].any()
    np.testing.assert_array_equal(stripped.mask, phantom.mask)


def test_thick_axial_slices_are_block_means_and_carry_their_affine(phantom):
    thick = thick_slices(phantom, 6.0, "axial", ("FLAIR", "T2w"))
    n = phantom.mask.shape[0] // 3
    assert thick.images["FLAIR"].shape == (n, *phantom.mask.shape[1:])
    expected = phantom.images["FLAIR"][3:6].mean(axis=0)
    np.testing.assert_allclose(thick.images["FLAIR"][1], expected, rtol=1e-5)
    assert thick.images["T1w"] is phantom.images["T1w"]  # the 3-D T1w keeps its grid
    np.testing.assert_array_equal(thick.image_affines["T1w"], phantom.affine)
    column = thick.affine[:3, 0]
    assert np.linalg.norm(column) == pytest.approx(6.0)
    # voxel 0 of the thick grid lies at the centre of fine slices 0-2
    np.testing.assert_allclose(thick.affine[:3, 3], phantom.affine[:3, :3] @ [1, 0, 0] + phantom.affine[:3, 3])
    assert thick.mask.shape == thick.images["FLAIR"].shape  # the mask follows the FLAIR
    assert thick.lesion_load.volume_ml == pytest.approx(thick.mask.sum() * 6 * 2 * 2 / 1000)


def test_thick_slices_of_another_axis_and_bad_thicknesses(phantom):
    sagittal = thick_slices(phantom, 4.0, "sagittal")
    assert sagittal.mask.shape == (*phantom.mask.shape[:2], phantom.mask.shape[2] // 2)
    assert not sagittal.image_affines  # everything on one (thick) grid
    with pytest.raises(InvalidInputError, match="whole multiple"):
        thick_slices(phantom, 3.0)
    with pytest.raises(InvalidInputError, match="slice axis"):
        thick_slices(phantom, 4.0, "oblique")


def test_sample_writes_a_mixed_protocol_that_loads_onto_the_flair_grid(tmp_path, capsys):
    args = ["sample", str(tmp_path), "--seed", "22", "--spacing", "2", "--slice-thickness", "4",
            "--thick", "FLAIR,T2w,PDw", "--skull-strip", "--load", "medium"]  # fmt: skip
    assert main(args) == 0
    folder = tmp_path / "sub-phantom001"
    flair, t1 = (nib.load(folder / f"sub-phantom001_{m}.nii.gz") for m in ("FLAIR", "T1w"))
    assert nib.affines.voxel_sizes(flair.affine) == pytest.approx((2, 2, 4))
    assert nib.affines.voxel_sizes(t1.affine) == pytest.approx((2, 2, 2))
    mask = nib.load(folder / "sub-phantom001_label-lesion_mask.nii.gz")
    assert mask.shape == flair.shape and np.array_equal(mask.affine, flair.affine)
    assert np.asarray(t1.dataobj)[0, 0, 0] == 0  # skull-stripped: the corner is empty
    subject = load_subject(folder)
    assert subject.geometry.shape == subject.images["T1w"].data.shape and "resampled T1w" in subject.notes[0]


def test_acquire_without_options_changes_nothing(phantom):
    assert acquire(phantom) is phantom
