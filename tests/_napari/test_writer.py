"""napari writers: layers back onto the grid of their source file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import make_affine, write_subject

from napari_lesionseg._napari.reader import read_paths
from napari_lesionseg._napari.writer import write_image, write_labels
from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.errors import InvalidInputError


@pytest.fixture
def lps_subject(tmp_path):
    return write_subject(tmp_path, affine=make_affine(spacing=(0.9, 1.1, 3.0)), axcodes="LPS")


def _layer(folder, name):
    return next((data, kwargs) for data, kwargs, _ in read_paths(str(folder)) if kwargs["name"] == name)


class TestWriteLabels:
    def test_round_trip_lands_on_the_source_grid(self, lps_subject, tmp_path):
        data, kwargs = _layer(lps_subject, "reference mask")
        [written] = write_labels(str(tmp_path / "edited.nii.gz"), data, kwargs)
        source = nib.load(lps_subject / f"sub-01_{MASK_SUFFIX}.nii.gz")
        out = nib.load(written)
        assert np.array_equal(out.affine, source.affine)
        assert out.shape == source.shape
        assert out.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(source.dataobj))

    def test_edited_values_are_kept(self, lps_subject, tmp_path):
        data, kwargs = _layer(lps_subject, "reference mask")
        edited = data.copy()
        edited[0, 0, 0] = 3
        [written] = write_labels(str(tmp_path / "edited_mask.nii"), edited, kwargs)
        [(reread, _, kind)] = read_paths(written)
        assert kind == "labels"
        np.testing.assert_array_equal(reread, edited)

    def test_wrong_shape_is_refused(self, lps_subject, tmp_path):
        data, kwargs = _layer(lps_subject, "reference mask")
        with pytest.raises(InvalidInputError, match=r"Layer 'reference mask' has shape \(17, 24, 20\)"):
            write_labels(str(tmp_path / "x.nii.gz"), data[1:], kwargs)

    def test_non_integer_labels_and_wrong_rank_are_refused(self, tmp_path):
        meta = {"name": "m", "scale": (1, 1, 1), "translate": (0, 0, 0)}
        with pytest.raises(InvalidInputError, match="integers"):
            write_labels(str(tmp_path / "x.nii.gz"), np.zeros((2, 2, 2), np.float32), meta)
        with pytest.raises(InvalidInputError, match="3-D"):
            write_labels(str(tmp_path / "x.nii.gz"), np.zeros((2, 2), np.uint8), meta)


class TestWriteImage:
    def test_image_is_float32_on_the_source_grid(self, lps_subject, tmp_path):
        data, kwargs = _layer(lps_subject, "T2w")
        [written] = write_image(str(tmp_path / "t2.nii.gz"), data, kwargs)
        source = nib.load(lps_subject / "sub-01_T2w.nii.gz")
        out = nib.load(written)
        assert out.get_data_dtype() == np.float32
        assert np.array_equal(out.affine, source.affine)
        np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(source.dataobj))

    def test_rgb_layer_is_refused(self, tmp_path):
        with pytest.raises(InvalidInputError, match="RGB"):
            write_image(str(tmp_path / "x.nii.gz"), np.zeros((2, 2, 3)), {"name": "photo", "rgb": True})


class TestLayerWithoutGeometry:
    def test_written_with_scale_and_translate_and_a_warning(self, tmp_path):
        data = np.zeros((4, 5, 6), np.uint8)
        data[1, 2, 3] = 1
        meta = {"name": "drawn", "scale": (3.0, 1.1, 0.9), "translate": (7.0, -8.0, 9.0), "metadata": {}}
        with pytest.warns(UserWarning, match="'drawn' has no source NIfTI geometry"):
            [written] = write_labels(str(tmp_path / "drawn_mask.nii.gz"), data, meta)
        assert nib.aff2axcodes(nib.load(written).affine) == ("R", "A", "S")
        [(reread, kwargs, kind)] = read_paths(written)
        assert kind == "labels"
        np.testing.assert_array_equal(reread, data)
        assert kwargs["scale"] == pytest.approx((3.0, 1.1, 0.9))
        assert kwargs["translate"] == pytest.approx((7.0, -8.0, 9.0))


@pytest.mark.slow
def test_saving_a_labels_layer_from_the_viewer(make_napari_viewer, lps_subject, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(lps_subject, plugin="napari-lesionseg")
    layer = viewer.layers["reference mask"]
    layer.data[0, 0, 0] = 1
    target = tmp_path / "saved.nii.gz"
    written = layer.save(str(target), plugin="napari-lesionseg")
    assert written == [str(target)]
    source = nib.load(lps_subject / f"sub-01_{MASK_SUFFIX}.nii.gz")
    out = nib.load(target)
    assert np.array_equal(out.affine, source.affine)
    expected = np.asanyarray(source.dataobj).copy()
    expected[0, 0, 0] = 1  # canonical (0, 0, 0), the most inferior, anterior, right voxel, is LPS index (0, 0, 0)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), expected)


def test_a_resampled_modality_is_not_written_over_the_scan_it_was_read_from(tmp_path):
    folder = write_subject(tmp_path, modalities=("FLAIR", "T1w"), with_mask=False)
    t1w = folder / "sub-01_T1w.nii.gz"
    coarse = nib.load(t1w)
    thick = np.asarray(coarse.dataobj)[:, :, ::2]
    nib.save(nib.Nifti1Image(thick, coarse.affine @ np.diag([1.0, 1.0, 2.0, 1.0])), t1w)  # 2 mm slices, same head
    before = t1w.read_bytes()
    data, kwargs = _layer(folder, "T1w")  # shown on the FLAIR's 1 mm grid
    with pytest.raises(InvalidInputError, match="resampled onto another grid .* replace the original scan"):
        write_image(str(t1w), data, kwargs)
    assert t1w.read_bytes() == before
    [written] = write_image(str(tmp_path / "t1w_on_flair.nii.gz"), data, kwargs)  # elsewhere it is fine
    assert nib.load(written).shape == nib.load(folder / "sub-01_FLAIR.nii.gz").shape
