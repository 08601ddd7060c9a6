"""napari reader: subject folders and single files -> layers, and bad input -> one clear notification."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_affine, write_nifti, write_subject

from napari_lesionseg._napari.metadata import geometry_from_layer_metadata
from napari_lesionseg._napari.reader import napari_get_reader, read_paths, robust_contrast_limits
from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.geometry import Geometry


class TestGetReader:
    def test_claims_nifti_files_and_folders_with_nifti(self, subject_dir):
        assert napari_get_reader(str(subject_dir)) is read_paths
        assert napari_get_reader(str(subject_dir / "sub-01_FLAIR.nii.gz")) is read_paths
        assert napari_get_reader([str(p) for p in sorted(subject_dir.iterdir())]) is read_paths

    def test_leaves_other_paths_to_other_plugins(self, tmp_path):
        (tmp_path / "picture.png").write_bytes(b"\x89PNG")
        assert napari_get_reader(str(tmp_path / "picture.png")) is None
        assert napari_get_reader(str(tmp_path)) is None  # a folder without NIfTI files
        assert napari_get_reader([]) is None


class TestReadSubjectFolder:
    def test_one_image_per_modality_and_the_mask_as_labels(self, subject_dir):
        layers = read_paths(str(subject_dir))
        assert [(kwargs["name"], kind) for _, kwargs, kind in layers] == [
            ("FLAIR", "image"),
            ("T1w", "image"),
            ("T2w", "image"),
            ("PDw", "image"),
            ("reference mask", "labels"),
        ]
        assert [kwargs["visible"] for _, kwargs, _ in layers] == [True, False, False, False, True]

    def test_layers_carry_spacing_translate_and_geometry(self, tmp_path):
        folder = write_subject(tmp_path, affine=make_affine(spacing=(0.9, 1.1, 3.0)), axcodes="LPS")
        data, kwargs, _ = read_paths(str(folder))[0]
        geometry = geometry_from_layer_metadata(kwargs["metadata"])
        assert isinstance(geometry, Geometry)
        assert kwargs["scale"] == pytest.approx((3.0, 1.1, 0.9))
        assert kwargs["translate"] == geometry.napari_translate
        assert kwargs["metadata"]["lesionseg"]["modality"] == "FLAIR"
        assert kwargs["metadata"]["lesionseg"]["path"] == str(folder / "sub-01_FLAIR.nii.gz")
        assert data.shape == geometry.shape == (18, 24, 20)

    def test_contrast_limits_are_robust(self, subject_dir):
        data, kwargs, _ = read_paths(str(subject_dir))[0]
        low, high = kwargs["contrast_limits"]
        assert data.min() < low < high < data.max()


class TestReadSingleFiles:
    def test_image_file(self, tmp_path):
        path = write_nifti(tmp_path / "scan.nii", np.random.default_rng(0).random((4, 5, 6)).astype(np.float32))
        [(data, kwargs, kind)] = read_paths(str(path))
        assert (kwargs["name"], kind, data.dtype) == ("scan", "image", np.float32)
        assert kwargs["metadata"]["lesionseg"]["modality"] is None

    @pytest.mark.parametrize("stem", [f"sub-01_{MASK_SUFFIX}", "sub-01_desc-pred_mask", "seg_dseg"])
    def test_mask_suffix_opens_as_labels_keeping_values(self, tmp_path, stem):
        labels = np.zeros((4, 5, 6), np.uint8)
        labels[1, 1, 1], labels[2, 2, 2] = 1, 3
        [(data, kwargs, kind)] = read_paths(str(write_nifti(tmp_path / f"{stem}.nii.gz", labels)))
        assert kind == "labels" and kwargs["name"] == stem
        assert sorted(np.unique(data)) == [0, 1, 3]

    def test_modalities_on_other_grids_land_on_the_flair_grid_with_one_info_notification(self, tmp_path):
        from napari.utils.notifications import notification_manager

        folder = write_subject(tmp_path, shape=(20, 24, 6), affine=make_affine((1.0, 1.0, 3.0)), modalities=("FLAIR",))
        other = write_subject(tmp_path / "t1", shape=(20, 24, 18), modalities=("T1w",), with_mask=False)
        (other / "sub-01_T1w.nii.gz").replace(folder / "sub-01_T1w.nii.gz")
        before = len(notification_manager.records)
        layers = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in read_paths(str(folder))}
        assert layers["T1w"][0].shape == layers["FLAIR"][0].shape and layers["T1w"][1]["scale"] == (3.0, 1.0, 1.0)
        [notification] = notification_manager.records[before:]
        assert notification.severity == "info" and "resampled T1w" in str(notification.message)

    def test_several_files(self, subject_dir):
        paths = [str(subject_dir / "sub-01_FLAIR.nii.gz"), str(subject_dir / f"sub-01_{MASK_SUFFIX}.nii.gz")]
        assert [kind for _, _, kind in read_paths(paths)] == ["image", "labels"]


class TestBadInputIsOneClearNotification:
    def test_error_becomes_notification_and_no_layers(self, tmp_path):
        from napari.utils.notifications import notification_manager

        write_nifti(tmp_path / "brain.nii.gz", np.ones((2, 2, 2), np.float32))
        before = len(notification_manager.records)
        assert read_paths(str(tmp_path)) == [(None,)]
        [notification] = notification_manager.records[before:]
        assert str(tmp_path) in str(notification.message)
        assert "no recognisable modality" in str(notification.message)
        assert notification.severity == "error"


def test_robust_contrast_limits_edge_cases():
    assert robust_contrast_limits(np.full((2, 2, 2), 5.0)) == (5.0, 6.0)
    data = np.zeros((10, 10, 10), np.float32)
    data[2:8, 2:8, 2:8] = np.linspace(100, 200, 216).reshape(6, 6, 6)
    low, high = robust_contrast_limits(data)
    assert 100 <= low < high <= 200


@pytest.mark.slow
class TestInViewer:
    def test_open_subject_folder_with_the_plugin(self, make_napari_viewer, tmp_path):
        folder = write_subject(tmp_path, affine=make_affine(spacing=(0.9, 1.1, 3.0)), axcodes="LAS")
        viewer = make_napari_viewer()
        layers = viewer.open(folder, plugin="napari-lesionseg")
        assert [layer.name for layer in layers] == ["FLAIR", "T1w", "T2w", "PDw", "reference mask"]
        assert [type(layer).__name__ for layer in layers] == ["Image"] * 4 + ["Labels"]
        np.testing.assert_allclose(viewer.layers["FLAIR"].scale, (3.0, 1.1, 0.9))
        assert viewer.layers["reference mask"].data.sum() > 0
        assert geometry_from_layer_metadata(viewer.layers["T2w"].metadata) is not None

    def test_bad_folder_in_viewer_shows_the_message_and_adds_nothing(self, make_napari_viewer, tmp_path):
        from napari.utils.notifications import notification_manager

        folder = write_subject(tmp_path, with_mask=False)
        write_nifti(folder / "sub-01_FLAIR.nii", np.ones((2, 2, 2), np.float32))
        viewer = make_napari_viewer()
        before = len(notification_manager.records)
        assert viewer.open(folder, plugin="napari-lesionseg") == []
        assert len(viewer.layers) == 0
        messages = [str(n.message) for n in notification_manager.records[before:]]
        assert any("FLAIR is present 2 times" in m for m in messages)


def test_the_window_spans_the_head_not_the_air_around_it():
    rng = np.random.default_rng(0)
    volume = rng.normal(5.0, 1.0, (40, 40, 40)).astype(np.float32)  # noisy air
    z, y, x = np.ogrid[:40, :40, :40]
    head = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 < 15**2
    volume[head] = rng.normal(300.0, 20.0, head.sum())  # tissue
    low, high = robust_contrast_limits(volume)
    assert low > 200.0 and high < 400.0  # the window starts in tissue, not at background level


def test_modality_files_opened_one_by_one_are_named_by_modality_and_only_flair_shows(make_subject):
    folder = make_subject(shape=(12, 10, 9))
    layers = {}
    for path in sorted(folder.glob("*.nii.gz")):
        for data, kwargs, layer_type in read_paths(str(path)):
            layers[kwargs["name"]] = kwargs["visible"]
    assert layers["FLAIR"] is True and layers["T1w"] is False and layers["T2w"] is False
