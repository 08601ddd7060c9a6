"""NIfTI I/O: canonical orientation, geometry, round trips and every bad input."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
from conftest import make_affine, reorient, synthetic_anatomy, write_nifti, write_subject

from napari_lesionseg._napari.metadata import geometry_from_layer_metadata, layer_metadata
from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.naming import find_subject_files, modality_of, nifti_stem
from napari_lesionseg.data.subject import Subject, load_subject
from napari_lesionseg.data.volumes import load_volume, save_volume
from napari_lesionseg.errors import InvalidInputError, LesionSegError

ANISOTROPIC = make_affine(spacing=(0.9, 1.1, 3.0), origin=(-10.0, 20.0, 5.0))


def _world(affine: np.ndarray, index) -> np.ndarray:
    return (affine @ np.append(np.asarray(index, dtype=float), 1.0))[:3]


class TestGeometry:
    @pytest.mark.parametrize("axcodes", ["RAS", "LPS", "LAS", "PIR", "ASL"])
    def test_same_anatomy_in_any_storage_order_gives_one_canonical_array(self, axcodes):
        images, _ = synthetic_anatomy((6, 7, 5))
        ras = Geometry.from_affine(ANISOTROPIC, (6, 7, 5))
        stored, stored_affine = reorient(images["FLAIR"], ANISOTROPIC, axcodes)
        other = Geometry.from_affine(stored_affine, stored.shape)
        np.testing.assert_array_equal(other.to_canonical(stored), ras.to_canonical(images["FLAIR"]))
        np.testing.assert_allclose(other.canonical_affine, ras.canonical_affine, atol=1e-12)
        assert other.spacing == pytest.approx(ras.spacing)
        assert other.napari_translate == pytest.approx(ras.napari_translate)

    def test_canonical_axes_point_superior_posterior_left(self):
        geometry = Geometry.from_affine(ANISOTROPIC, (6, 7, 5))
        assert nib.aff2axcodes(geometry.canonical_affine) == ("S", "P", "L")
        assert geometry.shape == (5, 7, 6)

    def test_spacing_follows_canonical_axes(self):
        assert Geometry.from_affine(ANISOTROPIC, (6, 7, 5)).spacing == pytest.approx((3.0, 1.1, 0.9))

    def test_napari_world_is_scanner_mm_along_s_p_l(self):
        geometry = Geometry.from_affine(make_affine((0.9, 1.1, 3.0), (-10, 20, 5), "LPS"), (6, 7, 5))
        index = np.array([2, 3, 4])  # canonical voxel
        x, y, z = _world(geometry.canonical_affine, index)
        napari_world = np.array(geometry.napari_translate) + index * np.array(geometry.spacing)
        np.testing.assert_allclose(napari_world, (z, -y, -x), atol=1e-9)

    def test_to_source_inverts_to_canonical(self):
        geometry = Geometry.from_affine(make_affine(axcodes="PIR"), (3, 4, 5))
        source = np.arange(60).reshape(3, 4, 5)
        canonical = geometry.to_canonical(source)
        assert canonical.flags.c_contiguous
        np.testing.assert_array_equal(geometry.to_source(canonical), source)

    def test_wrong_array_shape_is_refused(self):
        geometry = Geometry.from_affine(np.eye(4), (3, 4, 5))
        with pytest.raises(InvalidInputError, match="does not fit"):
            geometry.to_source(np.zeros((3, 4, 5)))

    def test_oblique_affine_keeps_exact_spacing(self):
        angle = np.deg2rad(10)
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        affine = np.eye(4)
        affine[:3, :3] = rotation @ np.diag([0.9, 1.1, 3.0])
        geometry = Geometry.from_affine(affine, (6, 7, 5))
        assert geometry.spacing == pytest.approx((3.0, 1.1, 0.9))
        assert nib.aff2axcodes(geometry.canonical_affine) == ("S", "P", "L")

    def test_singular_affine_is_refused(self):
        affine = np.diag([1.0, 0.0, 1.0, 1.0])
        with pytest.raises(InvalidInputError, match="singular"):
            Geometry.from_affine(affine, (3, 4, 5), source_name="bad.nii")

    def test_affine_is_read_only(self):
        geometry = Geometry.from_affine(np.eye(4), (2, 2, 2))
        with pytest.raises(ValueError):
            geometry.affine[0, 0] = 2.0

    def test_same_grid_ignores_storage_order_but_not_shift(self):
        ras = Geometry.from_affine(ANISOTROPIC, (6, 7, 5))
        _, lps_affine = reorient(np.zeros((6, 7, 5)), ANISOTROPIC, "LPS")
        assert ras.same_grid(Geometry.from_affine(lps_affine, (6, 7, 5)))
        shifted = ANISOTROPIC.copy()
        shifted[0, 3] += 0.5
        assert not ras.same_grid(Geometry.from_affine(shifted, (6, 7, 5)))
        assert not ras.same_grid(Geometry.from_affine(ANISOTROPIC, (6, 7, 6)))

    def test_from_layer_scale_places_voxel_zero_at_translate(self):
        geometry = Geometry.from_layer_scale((4, 5, 6), (3.0, 1.1, 0.9), (7.0, -8.0, 9.0))
        assert geometry.shape == (4, 5, 6)
        assert geometry.spacing == pytest.approx((3.0, 1.1, 0.9))
        assert geometry.napari_translate == pytest.approx((7.0, -8.0, 9.0))
        assert nib.aff2axcodes(geometry.affine) == ("R", "A", "S")

    def test_from_layer_scale_refuses_non_positive_scale(self):
        with pytest.raises(InvalidInputError, match="positive"):
            Geometry.from_layer_scale((4, 5, 6), (0.0, 1.0, 1.0), (0, 0, 0))


class TestLoadVolume:
    def test_image_is_float32_canonical(self, tmp_path):
        data = np.arange(6 * 7 * 5, dtype=np.int16).reshape(6, 7, 5)
        volume = load_volume(write_nifti(tmp_path / "a_T2w.nii.gz", data, ANISOTROPIC))
        assert volume.data.dtype == np.float32
        np.testing.assert_array_equal(volume.data, volume.geometry.to_canonical(data.astype(np.float32)))
        assert (volume.name, volume.modality) == ("a_T2w", "T2w")

    def test_plain_nii_is_accepted(self, tmp_path):
        volume = load_volume(write_nifti(tmp_path / "x.nii", np.ones((2, 3, 4), np.float32)))
        assert volume.data.shape == (4, 3, 2)
        assert volume.modality is None

    def test_scaled_integer_file_gives_scaled_values(self, tmp_path):
        image = nib.Nifti1Image(np.full((2, 2, 2), 10, np.int16), np.eye(4))
        image.header.set_slope_inter(2.0, 1.0)
        nib.save(image, tmp_path / "scaled.nii.gz")
        assert np.all(load_volume(tmp_path / "scaled.nii.gz").data == 21.0)

    def test_one_voxel_volume(self, tmp_path):
        volume = load_volume(write_nifti(tmp_path / "v.nii.gz", np.full((1, 1, 1), 3.0, np.float32)))
        assert volume.data.shape == (1, 1, 1)
        assert volume.geometry.spacing == pytest.approx((1.0, 1.0, 1.0))

    def test_singleton_fourth_axis_is_squeezed(self, tmp_path):
        data = np.random.default_rng(0).random((3, 4, 5, 1)).astype(np.float32)
        volume = load_volume(write_nifti(tmp_path / "v.nii.gz", data))
        assert volume.data.shape == (5, 4, 3)
        assert volume.geometry.source_shape == (3, 4, 5)

    def test_two_d_file_is_refused(self, tmp_path):
        path = write_nifti(tmp_path / "slice.nii.gz", np.ones((3, 4), np.float32))
        with pytest.raises(InvalidInputError, match=r"slice\.nii\.gz: is a 2-D image of shape \(3, 4\)"):
            load_volume(path)

    def test_a_missing_file_and_an_unreadable_one_say_so(self, tmp_path):
        with pytest.raises(InvalidInputError, match=r"gone_FLAIR\.nii\.gz: file not found"):
            load_volume(tmp_path / "gone_FLAIR.nii.gz")
        path = write_nifti(tmp_path / "locked.nii.gz", np.ones((3, 4, 5), np.float32))
        path.chmod(0)
        try:
            if os.access(path, os.R_OK):
                pytest.skip("this user reads files whatever their permissions (root)")
            with pytest.raises(InvalidInputError, match=r"locked\.nii\.gz: permission denied"):
                load_volume(path)
        finally:
            path.chmod(0o644)

    def test_a_zero_voxel_size_gives_one_line_and_nothing_from_nibabel(self, tmp_path, caplog):
        image = nib.Nifti1Image(np.ones((3, 4, 5), np.float32), None)
        image.header["pixdim"][1:4] = 0.0
        image.header.set_sform(None, code=0)
        image.header.set_qform(None, code=0)
        nib.save(image, tmp_path / "flat.nii.gz")
        caplog.clear()
        with pytest.raises(InvalidInputError, match=r"flat\.nii\.gz: its voxel size"):
            load_volume(tmp_path / "flat.nii.gz")
        # nibabel's "pixdim[1,2,3] should be non-zero" would reach stderr in the CLI (no handlers there)
        assert not [record for record in caplog.records if record.name.startswith("nibabel")]

    def test_four_d_series_is_refused(self, tmp_path):
        path = write_nifti(tmp_path / "series.nii.gz", np.zeros((3, 4, 5, 2), np.float32))
        with pytest.raises(InvalidInputError, match=r"series\.nii\.gz.*4-D series"):
            load_volume(path)

    def test_nan_voxels_are_refused_with_their_count(self, tmp_path):
        data = np.ones((3, 4, 5), np.float32)
        data[0, 0, :3] = np.nan
        data[1, 1, 1] = np.inf
        with pytest.raises(InvalidInputError, match=r"nan\.nii\.gz: 4 of 60 voxels are NaN or infinite"):
            load_volume(write_nifti(tmp_path / "nan.nii.gz", data))

    def test_float64_overflowing_float32_is_refused(self, tmp_path):
        data = np.full((2, 2, 2), 1e300)
        with pytest.raises(InvalidInputError, match="NaN or infinite"):
            load_volume(write_nifti(tmp_path / "huge.nii.gz", data))

    def test_rgb_is_refused(self, tmp_path):
        rgb = np.zeros((2, 2, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii.gz")
        with pytest.raises(InvalidInputError, match=r"rgb\.nii\.gz: voxel type .* not supported"):
            load_volume(tmp_path / "rgb.nii.gz")

    def test_empty_file_is_refused(self, tmp_path):
        (tmp_path / "empty.nii.gz").write_bytes(b"")
        with pytest.raises(InvalidInputError, match=r"empty\.nii\.gz: cannot be read as NIfTI"):
            load_volume(tmp_path / "empty.nii.gz")

    def test_truncated_gzip_is_refused(self, tmp_path):
        path = write_nifti(tmp_path / "cut.nii.gz", np.random.default_rng(0).random((20, 20, 20)))
        path.write_bytes(path.read_bytes()[:-200])
        with pytest.raises(InvalidInputError, match=r"cut\.nii\.gz: the voxel data cannot be read"):
            load_volume(path)

    def test_truncated_header_is_refused(self, tmp_path):
        path = write_nifti(tmp_path / "cut.nii", np.zeros((4, 4, 4), np.float32))
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(InvalidInputError, match=r"cut\.nii: cannot be read as NIfTI"):
            load_volume(path)

    def test_non_nifti_file_with_nifti_name_is_refused(self, tmp_path):
        (tmp_path / "notes.nii").write_text("these are not voxels\n" * 40)
        with pytest.raises(InvalidInputError, match=r"notes\.nii: cannot be read as NIfTI"):
            load_volume(tmp_path / "notes.nii")

    def test_gzip_of_text_is_refused(self, tmp_path):
        (tmp_path / "text.nii.gz").write_bytes(gzip.compress(b"hello" * 200))
        with pytest.raises(InvalidInputError, match=r"text\.nii\.gz"):
            load_volume(tmp_path / "text.nii.gz")

    def test_missing_file_and_wrong_extension(self, tmp_path):
        with pytest.raises(InvalidInputError, match="file not found"):
            load_volume(tmp_path / "nothing.nii.gz")
        (tmp_path / "image.png").write_bytes(b"\x89PNG")
        with pytest.raises(InvalidInputError, match="not a NIfTI file name"):
            load_volume(tmp_path / "image.png")

    def test_mask_nonzero_is_lesion(self, tmp_path):
        data = np.array([0, 1, 2, 7], dtype=np.int16).reshape(1, 2, 2)
        mask = load_volume(write_nifti(tmp_path / "m.nii.gz", data), kind="mask")
        assert mask.data.dtype == np.uint8
        assert sorted(np.unique(mask.data)) == [0, 1]
        assert mask.data.sum() == 3

    def test_fractional_mask_is_refused(self, tmp_path):
        path = write_nifti(tmp_path / "soft.nii.gz", np.full((2, 2, 2), 0.3, np.float32))
        with pytest.raises(InvalidInputError, match=r"soft\.nii\.gz: a mask must hold whole numbers"):
            load_volume(path, kind="mask")

    def test_negative_labels_are_refused(self, tmp_path):
        path = write_nifti(tmp_path / "neg.nii.gz", np.full((2, 2, 2), -1, np.int16))
        with pytest.raises(InvalidInputError, match="negative"):
            load_volume(path, kind="labels")

    def test_labels_keep_their_values(self, tmp_path):
        data = np.array([0, 1, 2, 300], dtype=np.int32).reshape(1, 2, 2)
        labels = load_volume(write_nifti(tmp_path / "l.nii.gz", data), kind="labels")
        assert labels.data.dtype == np.uint16
        assert sorted(np.unique(labels.data)) == [0, 1, 2, 300]

    def test_unknown_kind_is_a_programming_error(self, tmp_path):
        path = write_nifti(tmp_path / "x.nii.gz", np.zeros((2, 2, 2), np.float32))
        with pytest.raises(ValueError, match="kind"):
            load_volume(path, kind="probability")  # type: ignore[arg-type]


class TestSaveVolume:
    @pytest.mark.parametrize("axcodes", ["RAS", "LPS", "LAS"])
    def test_round_trip_keeps_affine_bit_for_bit_and_data_exactly(self, tmp_path, axcodes):
        images, mask = synthetic_anatomy((6, 7, 5))
        stored, affine = reorient(mask, ANISOTROPIC, axcodes)
        source = write_nifti(tmp_path / f"m_{axcodes}.nii.gz", stored, affine)
        volume = load_volume(source, kind="mask")
        out = save_volume(volume.data, volume.geometry, tmp_path / "out" / "mask.nii.gz")
        written = nib.load(out)
        original = nib.load(source)
        assert np.array_equal(written.affine, original.affine)
        assert written.header.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asanyarray(written.dataobj), stored)
        assert written.header["sform_code"] == original.header["sform_code"]
        assert written.header["qform_code"] == original.header["qform_code"]

    def test_qform_only_file_keeps_its_affine(self, tmp_path):
        image = nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), make_affine((0.9, 1.1, 3.0), axcodes="LPS"))
        image.header.set_sform(None, code=0)
        image.header.set_qform(image.affine, code="scanner")
        nib.save(image, tmp_path / "q.nii.gz")
        volume = load_volume(tmp_path / "q.nii.gz")
        out = save_volume(volume.data, volume.geometry, tmp_path / "q_out.nii.gz")
        assert np.array_equal(nib.load(out).affine, nib.load(tmp_path / "q.nii.gz").affine)
        assert nib.load(out).header["sform_code"] == 0

    def test_probabilities_are_float32_and_exact(self, tmp_path):
        volume = load_volume(write_nifti(tmp_path / "f.nii.gz", np.zeros((3, 4, 5), np.float32), ANISOTROPIC))
        probability = np.random.default_rng(1).random(volume.geometry.shape)
        out = save_volume(probability, volume.geometry, tmp_path / "p.nii")
        reloaded = load_volume(out)
        assert nib.load(out).get_data_dtype() == np.float32
        np.testing.assert_array_equal(reloaded.data, probability.astype(np.float32))

    def test_four_d_source_writes_three_d(self, tmp_path):
        volume = load_volume(write_nifti(tmp_path / "v.nii.gz", np.ones((3, 4, 5, 1), np.float32)))
        out = save_volume(volume.data > 0, volume.geometry, tmp_path / "o.nii.gz")
        assert nib.load(out).shape == (3, 4, 5)

    def test_explicit_dtype(self, tmp_path):
        geometry = Geometry.from_affine(np.eye(4), (2, 2, 2))
        out = save_volume(np.ones((2, 2, 2)), geometry, tmp_path / "o.nii.gz", dtype=np.int16)
        assert nib.load(out).get_data_dtype() == np.int16

    def test_wide_labels_get_a_wider_integer_type(self, tmp_path):
        geometry = Geometry.from_affine(np.eye(4), (2, 2, 2))
        out = save_volume(np.full((2, 2, 2), 1000, np.int64), geometry, tmp_path / "o.nii.gz")
        assert nib.load(out).get_data_dtype() == np.int16

    def test_wrong_shape_is_refused(self, tmp_path):
        geometry = Geometry.from_affine(np.eye(4), (2, 3, 4))
        with pytest.raises(InvalidInputError, match=r"shape \(2, 3, 4\) but its geometry expects \(4, 3, 2\)"):
            save_volume(np.zeros((2, 3, 4)), geometry, tmp_path / "o.nii.gz")

    def test_non_nifti_name_is_refused(self, tmp_path):
        geometry = Geometry.from_affine(np.eye(4), (2, 2, 2))
        with pytest.raises(InvalidInputError, match=r"\.nii\.gz or \.nii"):
            save_volume(np.zeros((2, 2, 2)), geometry, tmp_path / "o.png")

    def test_write_is_atomic_and_leaves_no_temporary_file(self, tmp_path):
        geometry = Geometry.from_affine(np.eye(4), (2, 2, 2))
        target = tmp_path / "o.nii.gz"
        save_volume(np.zeros((2, 2, 2)), geometry, target)
        assert os.listdir(tmp_path) == ["o.nii.gz"]


class TestFindSubjectFiles:
    def test_modalities_in_project_order_and_mask(self, tmp_path):
        folder = write_subject(tmp_path, modalities=("PDw", "FLAIR", "T1c", "T1w"))
        images, mask = find_subject_files(folder)
        assert list(images) == ["FLAIR", "T1w", "PDw", "T1c"]
        assert mask == folder / f"sub-01_{MASK_SUFFIX}.nii.gz"

    def test_plain_nii_case_insensitive_suffixes_and_other_files_ignored(self, tmp_path):
        folder = tmp_path / "s"
        write_nifti(folder / "s_flair.nii", np.ones((2, 2, 2), np.float32))
        write_nifti(folder / "s_brainmask.nii.gz", np.ones((2, 2, 2), np.float32))
        (folder / "s_FLAIR.json").write_text("{}")
        (folder / ".s_T1w.nii.gz.abc.tmp.nii.gz").write_bytes(b"")
        images, mask = find_subject_files(folder)
        assert images == {"FLAIR": folder / "s_flair.nii"}
        assert mask is None

    def test_folder_without_modality_is_refused_with_what_was_found(self, tmp_path):
        write_nifti(tmp_path / "brain.nii.gz", np.ones((2, 2, 2), np.float32))
        with pytest.raises(InvalidInputError, match=r"no recognisable modality \(found brain\.nii\.gz\).*_FLAIR\.nii\.gz"):
            find_subject_files(tmp_path)

    def test_empty_folder_is_refused(self, tmp_path):
        with pytest.raises(InvalidInputError, match="found no NIfTI files"):
            find_subject_files(tmp_path)

    def test_duplicate_modality_is_refused(self, tmp_path):
        folder = write_subject(tmp_path, modalities=("FLAIR",), with_mask=False)
        write_nifti(folder / "sub-01_FLAIR.nii", np.ones((2, 2, 2), np.float32))
        with pytest.raises(InvalidInputError, match=r"FLAIR is present 2 times \(sub-01_FLAIR\.nii, sub-01_FLAIR\.nii\.gz\)"):
            find_subject_files(folder)

    def test_two_subjects_in_one_folder_are_refused(self, tmp_path):
        write_subject(tmp_path, name="sub-01", with_mask=False)
        folder = tmp_path / "sub-01"
        write_nifti(folder / "sub-02_FLAIR.nii.gz", np.ones((2, 2, 2), np.float32))
        with pytest.raises(InvalidInputError, match=r"more than one subject \(sub-01: .*; sub-02: sub-02_FLAIR\.nii\.gz\)"):
            find_subject_files(folder)

    def test_a_file_is_not_a_folder(self, tmp_path):
        path = write_nifti(tmp_path / "a_FLAIR.nii.gz", np.ones((2, 2, 2), np.float32))
        with pytest.raises(InvalidInputError, match="not a folder"):
            find_subject_files(path)


class TestLoadSubject:
    def test_subject_stack_and_mask(self, subject_dir):
        subject = load_subject(subject_dir)
        assert isinstance(subject, Subject)
        assert subject.name == "sub-01"
        assert subject.modalities == ("FLAIR", "T1w", "T2w", "PDw")
        assert subject.reference == "FLAIR"
        stack = subject.stack(("T2w", "FLAIR"))
        assert stack.shape == (2, 18, 24, 20) and stack.dtype == np.float32
        np.testing.assert_array_equal(stack[1], subject.images["FLAIR"].data)
        assert subject.mask.data.dtype == np.uint8 and subject.mask.data.sum() > 0
        assert subject.mask.name == "reference mask"

    def test_ras_lps_las_files_give_identical_subjects(self, tmp_path):
        affine = make_affine(spacing=(0.9, 1.1, 3.0), origin=(-10.0, 20.0, 5.0))
        subjects = [
            load_subject(write_subject(tmp_path / axcodes, affine=affine, axcodes=axcodes, suffix=suffix))
            for axcodes, suffix in (("RAS", ".nii.gz"), ("LPS", ".nii"), ("LAS", ".nii.gz"))
        ]
        reference = subjects[0]
        for subject in subjects[1:]:
            np.testing.assert_array_equal(subject.stack(), reference.stack())
            np.testing.assert_array_equal(subject.mask.data, reference.mask.data)
            assert subject.geometry.spacing == pytest.approx(reference.geometry.spacing)
            assert subject.geometry.napari_translate == pytest.approx(reference.geometry.napari_translate, abs=1e-5)

    def test_stack_names_missing_modalities(self, make_subject):
        subject = load_subject(make_subject(modalities=("FLAIR", "T1w")))
        with pytest.raises(InvalidInputError, match=r"lacks T2w, PDw: found FLAIR, T1w"):
            subject.stack(("FLAIR", "T1w", "T2w", "PDw"))

    def test_subject_without_flair_uses_first_modality_as_reference(self, make_subject):
        subject = load_subject(make_subject(modalities=("T2w", "T1w"), with_mask=False))
        assert subject.reference == "T1w" and subject.mask is None

    def test_modalities_stored_in_different_orders_are_one_grid(self, tmp_path):
        folder = write_subject(tmp_path, axcodes="LPS")
        write_subject(tmp_path / "las", modalities=("T1w",), with_mask=False, axcodes="LAS")
        (tmp_path / "las" / "sub-01" / "sub-01_T1w.nii.gz").replace(folder / "sub-01_T1w.nii.gz")
        subject = load_subject(folder)
        assert subject.images["T1w"].geometry.same_grid(subject.geometry)

    def test_different_shapes_are_resampled_onto_the_flair_grid_with_a_note(self, tmp_path):
        folder = write_subject(tmp_path, with_mask=False)
        write_subject(tmp_path / "other", modalities=("T1w",), with_mask=False, shape=(20, 24, 16))
        (tmp_path / "other" / "sub-01" / "sub-01_T1w.nii.gz").replace(folder / "sub-01_T1w.nii.gz")
        subject = load_subject(folder)
        assert subject.images["T1w"].geometry is subject.geometry
        (note,) = subject.notes
        assert "resampled T1w (1x1x1 mm, 20x24x16)" in note and "onto the FLAIR grid" in note  # not rotated
        assert subject.sources["T1w"].data.shape == (16, 24, 20)

    def test_different_affines_are_resampled(self, tmp_path):
        folder = write_subject(tmp_path, with_mask=False)
        write_subject(tmp_path / "o", modalities=("T2w",), with_mask=False, affine=make_affine(origin=(-9, -12, -9)))
        (tmp_path / "o" / "sub-01" / "sub-01_T2w.nii.gz").replace(folder / "sub-01_T2w.nii.gz")
        subject = load_subject(folder)
        assert subject.images["T2w"].geometry is subject.geometry and "T2w" in subject.notes[0]

    def test_mask_that_does_not_overlap_the_flair_is_refused_naming_both_files(self, tmp_path):
        folder = write_subject(tmp_path)
        write_nifti(folder / f"sub-01_{MASK_SUFFIX}.nii.gz", np.zeros((4, 4, 4), np.uint8))
        with pytest.raises(InvalidInputError, match=r"mask\.nii\.gz: the reference mask does not overlap the FLAIR .*sub-01_FLAIR\.nii\.gz"):
            load_subject(folder)

    def test_a_slab_over_part_of_the_head_is_kept_and_a_volume_of_another_space_refused(self, tmp_path):
        folder = write_subject(tmp_path, with_mask=False)
        t1w = folder / "sub-01_T1w.nii.gz"
        image = nib.load(t1w)
        slab = np.asarray(image.dataobj)[:, :, :6]  # the lowest 6 of 18 slices
        nib.save(nib.Nifti1Image(slab, image.affine), t1w)
        subject = load_subject(folder)  # its head lies inside the FLAIR's field of view: prediction notes the coverage
        assert subject.sources["T1w"].data.shape[0] == 6 and "resampled T1w" in subject.notes[0]
        moved = image.affine.copy()
        moved[2, 3] += 15.0  # the same slab 15 mm higher: half of it above the FLAIR's field of view
        nib.save(nib.Nifti1Image(slab, moved), t1w)
        with pytest.raises(InvalidInputError, match=r"T1w\.nii\.gz: the T1w does not overlap the FLAIR"):
            load_subject(folder)

    def test_nifti_files_whose_names_give_no_modality_are_named_in_a_note(self, tmp_path):
        folder = write_subject(tmp_path, with_mask=False)
        write_nifti(folder / "t1.nii.gz", np.ones((4, 4, 4), np.float32))
        write_nifti(folder / "T2.nii", np.ones((4, 4, 4), np.float32))
        (folder / "notes.txt").write_text("not an image")
        save_volume(np.zeros((4, 4, 4), np.uint8), Geometry.from_affine(np.eye(4), (4, 4, 4)), folder / "sub-01_mask.nii.gz")
        subject = load_subject(folder)
        (note,) = subject.notes
        assert note.startswith("sub-01: left out T2.nii, t1.nii.gz: the name gives no modality")  # not our own output
        assert set(subject.images) == {"FLAIR", "T1w", "T2w", "PDw"}

    def test_resample_puts_everything_on_the_flair_grid(self, tmp_path):
        folder = write_subject(tmp_path, modalities=("FLAIR",), with_mask=False)
        coarse = make_affine(spacing=(2.0, 2.0, 2.0), origin=(-10, -12, -9))
        write_subject(tmp_path / "c", modalities=("T1w",), shape=(10, 12, 9), affine=coarse)
        for path in (tmp_path / "c" / "sub-01").iterdir():
            path.replace(folder / path.name)
        subject = load_subject(folder, resample=True)
        for volume in (subject.images["T1w"], subject.mask):
            assert volume.data.shape == subject.geometry.shape
            assert volume.geometry is subject.geometry
        assert set(np.unique(subject.mask.data)) <= {0, 1}
        assert subject.images["T1w"].data.dtype == np.float32

    def test_bad_file_in_subject_surfaces_its_name(self, tmp_path):
        folder = write_subject(tmp_path, with_mask=False)
        (folder / "sub-01_PDw.nii.gz").write_bytes(b"")
        with pytest.raises(LesionSegError, match=r"sub-01_PDw\.nii\.gz: cannot be read"):
            load_subject(folder)


class TestNamesAndMetadata:
    def test_nifti_stem_and_modality(self):
        assert nifti_stem("a/sub-01_T1w.nii.gz") == "sub-01_T1w"
        assert nifti_stem("b.NII") == "b"
        assert modality_of("sub-01_pdw.nii") == "PDw"
        assert modality_of(f"sub-01_{MASK_SUFFIX}.nii.gz") is None
        assert modality_of("sub-01T1w.nii.gz") is None

    def test_geometry_from_layer_metadata_and_layer_state(self):
        geometry = Geometry.from_affine(np.eye(4), (2, 2, 2))
        metadata = layer_metadata(geometry, modality="FLAIR", path="x.nii.gz")
        assert metadata["lesionseg"]["modality"] == "FLAIR"
        assert geometry_from_layer_metadata(metadata) is geometry
        assert geometry_from_layer_metadata({"name": "m", "metadata": metadata}) is geometry
        assert geometry_from_layer_metadata({}) is None
        assert geometry_from_layer_metadata(None) is None
        assert geometry_from_layer_metadata({"lesionseg": {"geometry": "not a geometry"}}) is None


def test_two_blank_modalities_open_and_one_scan_twice_does_not(tmp_path):
    folder = write_subject(tmp_path, shape=(10, 12, 8), modalities=("FLAIR", "T1w", "T2w", "PDw"))
    for modality in ("T2w", "PDw"):  # blank exports: the run refuses them by name later
        write_nifti(folder / f"sub-01_{modality}.nii.gz", np.zeros((10, 12, 8), np.float32))
    assert set(load_subject(folder).images) == {"FLAIR", "T1w", "T2w", "PDw"}
    (folder / "sub-01_T1w.nii.gz").write_bytes((folder / "sub-01_FLAIR.nii.gz").read_bytes())
    with pytest.raises(InvalidInputError, match=r"sub-01_T1w\.nii\.gz: its voxels are those of .*sub-01_FLAIR"):
        load_subject(folder)


def test_the_resampling_note_says_when_a_volume_is_rotated_from_the_flair(tmp_path):
    folder = write_subject(tmp_path, with_mask=False)
    t1w = folder / "sub-01_T1w.nii.gz"
    image = nib.load(t1w)
    angle = np.radians(8.0)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0, 0], [np.sin(angle), np.cos(angle), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), turn @ image.affine), t1w)
    (note,) = load_subject(folder).notes
    assert "T1w (1x1x1 mm, 20x24x18, rotated 8 degrees from it) onto the FLAIR grid" in note
