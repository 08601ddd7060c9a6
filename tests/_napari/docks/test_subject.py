"""Subject dock in a real headless viewer: open a folder, list geometry, save back onto the source grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_lesionseg._napari.docks import SubjectWidget
from napari_lesionseg.data.volumes import load_volume

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = SubjectWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Subject")
    return viewer, dock


def _open(qtbot, dock, folder):
    dock.open_subject(folder)
    qtbot.waitUntil(lambda: not dock.busy, timeout=20_000)


def test_open_folder_adds_layers_and_lists_geometry(qtbot, widget, make_subject):
    viewer, dock = widget
    folder = make_subject(axcodes="LPS")
    _open(qtbot, dock, folder)
    assert [layer.name for layer in viewer.layers] == ["FLAIR", "T1w", "T2w", "PDw", "reference mask"]
    rows = dock._table.data.to_list()
    assert [row[0] for row in rows] == ["FLAIR", "T1w", "T2w", "PDw", "reference mask"]
    assert all(row[3] == "LPS" for row in rows)  # the file's own axes, shown to the user
    assert "sub-01" in dock._status.value


def test_bad_folder_gives_a_notification_and_no_layers(qtbot, widget, tmp_path):
    from napari.utils.notifications import notification_manager

    viewer, dock = widget
    (tmp_path / "empty").mkdir()
    before = len(notification_manager.records)
    _open(qtbot, dock, tmp_path / "empty")
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("no recognisable modality" in m for m in messages)
    assert len(viewer.layers) == 0


def test_save_edited_mask_lands_on_the_source_grid(qtbot, widget, make_subject, tmp_path):
    viewer, dock = widget
    folder = make_subject(axcodes="LAS")
    _open(qtbot, dock, folder)
    mask_layer = viewer.layers["reference mask"]
    mask_layer.data[0, 0, 0] = 1  # a user's correction
    source = next(folder.glob("*_label-lesion_mask.nii.gz"))
    target = tmp_path / "corrected.nii.gz"
    dock.save_layer(mask_layer, target)
    written, original = nib.load(target), nib.load(source)
    assert np.array_equal(written.affine, original.affine)
    assert written.shape == original.shape
    assert np.array_equal(load_volume(target, kind="mask").data, mask_layer.data)


@pytest.mark.parametrize("layer_name", ["T1w", "reference mask"])
def test_save_never_overwrites_an_opened_input(qtbot, widget, make_subject, layer_name):
    from napari_lesionseg.errors import LesionSegError

    viewer, dock = widget
    folder = make_subject()
    _open(qtbot, dock, folder)
    source = next(folder.glob("*_T1w.nii.gz" if layer_name == "T1w" else "*_label-lesion_mask.nii.gz"))
    before = source.read_bytes()
    viewer.layers[layer_name].data[0, 0, 0] += 1
    with pytest.raises(LesionSegError, match="inputs are never overwritten"):
        dock.save_layer(viewer.layers[layer_name], source)
    assert source.read_bytes() == before


def test_save_does_not_replace_a_file_it_did_not_write(qtbot, widget, make_subject, tmp_path):
    from napari_lesionseg.errors import LesionSegError

    viewer, dock = widget
    _open(qtbot, dock, make_subject())
    foreign = tmp_path / "notes.nii.gz"
    foreign.write_bytes(b"someone else's file")
    with pytest.raises(LesionSegError, match="was not written by napari-lesionseg"):
        dock.save_layer(viewer.layers["FLAIR"], foreign)
    assert foreign.read_bytes() == b"someone else's file"
    with pytest.raises(LesionSegError, match="is a folder"):
        dock.save_layer(viewer.layers["FLAIR"], tmp_path)


def test_save_layer_without_geometry_is_refused_clearly(widget):
    from napari_lesionseg.errors import LesionSegError

    viewer, dock = widget
    layer = viewer.add_labels(np.zeros((4, 4, 4), dtype=np.uint8), name="drawn")
    with pytest.raises(LesionSegError, match="'drawn' has no source geometry"):
        dock.save_layer(layer, "x.nii.gz")


def test_opening_the_same_folder_twice_adds_nothing_twice(make_napari_viewer, make_subject):
    from napari_lesionseg._napari._layers import add_subject_layers
    from napari_lesionseg._napari.reader import subject_layer_data
    from napari_lesionseg.data.subject import load_subject

    viewer = make_napari_viewer()
    subject = load_subject(make_subject(shape=(12, 10, 9)))
    added, skipped = add_subject_layers(viewer, subject_layer_data(subject))
    again, skipped_again = add_subject_layers(viewer, subject_layer_data(subject))
    assert added and not skipped and again == [] and len(skipped_again) == len(added)
    assert not any(layer.name.endswith("[1]") for layer in viewer.layers)


def test_scanner_named_files_can_be_assigned_modalities_in_the_dock(qtbot, make_napari_viewer, tmp_path, monkeypatch):
    from conftest import write_nifti

    from napari_lesionseg._napari.docks.subject import SubjectWidget

    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    folder = tmp_path / "exam-0042"
    for seed, name in enumerate(("301_3D_FLAIR_SAG.nii.gz", "401_T1_MPRAGE.nii.gz")):  # two scans, not one twice
        write_nifti(folder / name, np.random.default_rng(seed).random((10, 12, 8)).astype(np.float32))
    viewer = make_napari_viewer()
    dock = SubjectWidget(viewer)
    dock.open_subject(folder)
    qtbot.waitUntil(lambda: dock._assign.offered, timeout=60_000)  # refused, and asked which file is which
    assert len(viewer.layers) == 0
    dock._assign.set_role("301_3D_FLAIR_SAG.nii.gz", "FLAIR")
    dock._assign.set_role("401_T1_MPRAGE.nii.gz", "T1w")
    assert dock._assign.apply() is not None
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["FLAIR", "T1w"]
    assert viewer.layers["FLAIR"].metadata["lesionseg"]["modality"] == "FLAIR"


def test_the_modality_choices_go_away_when_another_folder_is_opened(qtbot, widget, make_subject, tmp_path):
    from conftest import write_nifti

    _, dock = widget
    scanner_named = tmp_path / "exam-0043"
    write_nifti(scanner_named / "301_FLAIR_AX.nii.gz", np.random.default_rng(0).random((10, 12, 8)).astype(np.float32))
    _open(qtbot, dock, scanner_named)
    assert dock._assign.offered
    _open(qtbot, dock, make_subject())
    assert not dock._assign.offered and "sub-01" in dock._status.value


def test_a_resampled_modality_is_listed_with_the_grid_it_was_acquired_on(qtbot, widget, make_subject):
    _, dock = widget
    folder = make_subject(modalities=("FLAIR", "T1w"), with_mask=False)
    t1w = folder / "sub-01_T1w.nii.gz"
    image = nib.load(t1w)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:, :, ::2], image.affine @ np.diag([1.0, 1.0, 2.0, 1.0])), t1w)
    _open(qtbot, dock, folder)
    rows = {row[0]: row for row in dock._table.data.to_list()}
    assert rows["T1w"][1] == rows["FLAIR"][1]  # shown on the FLAIR's grid
    acquired = " x ".join(map(str, load_volume(t1w).geometry.shape))
    assert rows["T1w"][4].startswith(f"sub-01_T1w.nii.gz (resampled from {acquired} at ") and rows["FLAIR"][4] == "sub-01_FLAIR.nii.gz"
