"""What the Lesion review draws and writes on screen: the selected lesion's ring, text that grows by lines."""

import numpy as np

from napari_lesionseg._napari.docks import LesionReviewWidget


def _dock(viewer) -> LesionReviewWidget:
    dock = LesionReviewWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Lesion review")
    return dock


def _masks() -> tuple[np.ndarray, np.ndarray]:
    """A prediction and a reference sharing one lesion, each with one of its own."""
    prediction, reference = np.zeros((20, 30, 30), np.uint8), np.zeros((20, 30, 30), np.uint8)
    reference[5:8, 5:8, 5:8] = prediction[5:8, 5:8, 5:8] = 1
    reference[12:14, 20:23, 20:23] = 1
    prediction[12:15, 5:9, 20:24] = 1
    return prediction, reference


def test_the_ring_is_drawn_when_a_finer_layer_sets_the_slider_steps(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    reference = np.zeros((40, 100, 100), np.uint8)
    reference[20:24, 60:64, 30:34] = 1  # centre on slice 21.5: world 43 mm on the 2 mm grid
    viewer.add_image(np.full((40, 100, 100), 0.2, np.float32), name="FLAIR", scale=(2, 2, 2))
    fusion_map = np.zeros((53, 133, 133), np.float32)  # a 1.5 mm grid not aligned with the 2 mm one
    viewer.add_image(fusion_map, name="fusion map", scale=(1.5,) * 3, translate=(-1.0,) * 3, visible=False)
    ref = viewer.add_labels(reference, name="reference", scale=(2, 2, 2))
    pred = viewer.add_labels(reference.copy(), name="prediction", scale=(2, 2, 2))
    dock = _dock(viewer)
    dock.set_prediction(pred)
    dock.set_reference(ref)
    dock.update(blocking=True)
    dock.select_lesion(0)
    assert abs(viewer.dims.point[0] - 43.0) > 0.25  # the slider snapped off the lesion's 2 mm slice
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    yellow = (shot[..., 0] > 200) & (shot[..., 1] > 200) & (shot[..., 2] < 80)
    assert yellow.sum() > 100  # the ring, not only its data, is on the displayed slice


def _reviewed(make_napari_viewer, qtbot):
    """A shown viewer whose review dock has reviewed two short-named masks: one-line texts so far."""
    viewer = make_napari_viewer(show=True)
    prediction, reference = _masks()
    dock = _dock(viewer)
    pred, ref = viewer.add_labels(prediction, name="p"), viewer.add_labels(reference, name="r")
    dock.set_prediction(pred)
    dock.set_reference(ref)
    dock.update(blocking=True)
    qtbot.wait(100)
    return dock, pred, ref


def _assert_shown_whole_on_three_lines(label) -> None:
    needed = label.heightForWidth(label.width()) if label.hasHeightForWidth() else label.sizeHint().height()
    assert needed > 2 * label.fontMetrics().height()  # three lines or more
    assert label.height() >= needed


def test_a_summary_that_grows_to_several_lines_is_shown_whole(make_napari_viewer, qtbot):
    """After a one-line summary, long layer names make it three lines: the label grows with it, not clipped."""
    dock, pred, ref = _reviewed(make_napari_viewer, qtbot)
    pred.name, ref.name = "lesion mask [fbeta_1.5_generator, fine-tuned on sub-01]", "reference mask of the second rater"
    dock.update(blocking=True)
    qtbot.wait(100)
    _assert_shown_whole_on_three_lines(dock._status.native)


def test_the_autosave_status_grows_to_its_lines(make_napari_viewer, qtbot):
    """The one-line "no corrected mask yet" becomes a three-line reason autosave is off: all of it shows."""
    dock, _, _ = _reviewed(make_napari_viewer, qtbot)
    dock.new_corrected_mask()  # the layers come from arrays, not NIfTI files: autosave says why it is off
    qtbot.wait(100)
    label = dock._correction.status.native
    assert "Autosave off" in label.text()
    _assert_shown_whole_on_three_lines(label)
