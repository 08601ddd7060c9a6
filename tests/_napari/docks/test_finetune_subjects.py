"""The Fine-tune dock trains a corrected mask with its own subject's scans, never another patient's."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Layer

from napari_lesionseg._napari._finetune_inputs import images_text
from napari_lesionseg._napari._subjects import check_one_subject
from napari_lesionseg._napari.docks import FineTuneWidget
from napari_lesionseg._napari.metadata import geometry_from_layer_metadata, layer_metadata
from napari_lesionseg._napari.reader import subject_layer_data
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.errors import InvalidInputError, LesionSegError

from .test_finetune import PARENT, _parent_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _open(viewer, folder) -> None:
    for data, kwargs, layer_type in subject_layer_data(load_subject(folder)):
        viewer.add_layer(Layer.create(data, kwargs, layer_type))


def test_a_mask_made_in_the_viewer_with_two_subjects_on_its_grid_is_refused(home, make_napari_viewer, make_subject):
    _parent_checkpoint()
    viewer = make_napari_viewer()
    _open(viewer, make_subject(name="sub-01", shape=(24, 24, 24)))
    _open(viewer, make_subject(name="sub-02", shape=(24, 24, 24), seed=1))
    flair = viewer.layers["FLAIR"]
    painted = np.zeros(flair.data.shape, np.uint8)
    painted[10:14, 10:14, 10:14] = 1
    viewer.add_labels(painted, name="corrected mask", metadata=layer_metadata(geometry_from_layer_metadata(flair.metadata)))
    widget = FineTuneWidget(viewer)
    widget.set_checkpoint(PARENT)
    with pytest.raises(LesionSegError, match=r"could belong to any of the subjects open on its grid \(sub-01, sub-02\)"):
        widget._request()


def test_the_images_line_names_what_the_newest_subject_lacks(home, make_napari_viewer, make_subject):
    _parent_checkpoint()
    viewer = make_napari_viewer()
    _open(viewer, make_subject(name="sub-01", shape=(24, 24, 24)))
    _open(viewer, make_subject(name="sub-02", shape=(24, 24, 24), modalities=("FLAIR", "T1w")))
    from napari_lesionseg.engine.checkpoints import list_checkpoints

    parent = next(info for info in list_checkpoints() if info.name == PARENT)
    assert images_text(viewer, parent) == "Images: missing T2w, PDw (open the subject's modalities)"


def test_folders_of_scanner_named_files_are_subjects_too(tmp_path):
    def layer(folder, name):
        path = tmp_path / folder / name
        return Image(np.zeros((4, 4, 4)), metadata=layer_metadata(_grid(), path=path))

    with pytest.raises(InvalidInputError, match=r"come from 2 subjects \(FLAIR from exam-1 .*T1w from exam-2"):
        check_one_subject({"FLAIR": layer("exam-1", "301_FLAIR_AX.nii.gz"), "T1w": layer("exam-2", "401_T1_MPRAGE.nii.gz")})
    check_one_subject({"FLAIR": layer("exam-1", "301_FLAIR_AX.nii.gz"), "T1w": layer("exam-1", "401_T1_MPRAGE.nii.gz")})


def _grid():
    from napari_lesionseg.data.geometry import Geometry

    return Geometry.from_layer_scale((4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def test_a_correction_of_a_run_belongs_to_the_subject_the_run_segmented(home, make_napari_viewer, make_subject, qtbot):
    from napari_lesionseg._napari.docks import InferenceWidget, LesionReviewWidget

    viewer = make_napari_viewer()
    _open(viewer, make_subject(name="sub-01", shape=(24, 24, 24)))
    second = make_subject(name="sub-02", shape=(24, 24, 24), seed=1)
    _open(viewer, second)  # on the same grid, opened last: the Inference dock's inputs
    inference = InferenceWidget(viewer)
    inference.set_options(tta=False, batch_size=8)
    inference.run()
    qtbot.waitUntil(lambda: not inference.busy, timeout=120_000)
    review = LesionReviewWidget(viewer)
    run_mask = next(layer for layer in viewer.layers if layer.name.startswith("lesion mask"))
    review.set_prediction(run_mask)
    corrected = review.new_corrected_mask()
    assert review._correction.masks.autosave_target(corrected).path.parent == second
    widget = FineTuneWidget(viewer)
    widget.set_checkpoint("tiny-beta1")
    widget.set_mask(corrected)
    request = widget._request()
    flair_02 = next(layer for layer in viewer.layers if layer.name.startswith("FLAIR") and str(second) in str(layer.metadata))
    assert request.subject_name == "sub-02" and np.array_equal(request.images["FLAIR"], flair_02.data)


def test_the_images_line_names_the_scans_of_the_masks_subject(home, make_napari_viewer, make_subject):
    _parent_checkpoint()
    viewer = make_napari_viewer()
    first = make_subject(name="sub-01", shape=(24, 24, 24))
    _open(viewer, first)
    _open(viewer, make_subject(name="sub-02", shape=(24, 24, 24), modalities=("FLAIR", "T1w")))
    flair = viewer.layers["FLAIR"]
    grid = geometry_from_layer_metadata(flair.metadata)
    painted = np.zeros(flair.data.shape, np.uint8)
    painted[10:14, 10:14, 10:14] = 1
    mask = viewer.add_labels(
        painted, name="corrected mask",
        metadata=layer_metadata(grid, path=first / "sub-01_corrected.nii.gz"),
    )  # fmt: skip
    widget = FineTuneWidget(viewer)
    widget.set_checkpoint(PARENT)
    widget.set_mask(mask)
    line = widget._images_label.value
    assert "missing" not in line and line.count(",") == 3, line  # sub-01's four scans, not sub-02's two
    assert widget._request().subject_name == "sub-01"
