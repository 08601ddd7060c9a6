"""Lesion review dock in a real headless viewer: overlay colours on screen, tables, navigation,
accept/reject edits, autosave and restore, a real inference run's probability, bad states."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from napari.layers import Labels, Layer
from qtpy.QtCore import Qt

from napari_lesionseg._napari._orientation import camera
from napari_lesionseg._napari._session import RunRecord, session_for
from napari_lesionseg._napari.docks import LesionReviewWidget
from napari_lesionseg._napari.metadata import layer_metadata
from napari_lesionseg._napari.reader import subject_layer_data
from napari_lesionseg.constants import FN, FP, TP
from napari_lesionseg.data.corrections import load_corrected_mask
from napari_lesionseg.data.intensity import normalize_stack
from napari_lesionseg.data.naming import CORRECTED_SUFFIX
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.run import run_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.evaluation.metrics import compute_metrics
from napari_lesionseg.models import build_model, model_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHAPE = (24, 24, 24)
#: Boxes (z, y, x slices). On slice 12: A detected (TP), B missed (FN), C false positive (FP).
A = np.s_[10:15, 2:10, 2:10]
B = np.s_[10:15, 2:10, 14:22]
C = np.s_[10:15, 14:22, 2:10]
#: D, on slices 3-5, is found only in part: voxel-wise half TP half FN, lesion-wise all TP.
D_REFERENCE = np.s_[3:6, 14:20, 14:20]
D_PREDICTED = np.s_[3:6, 14:20, 14:17]
B_VOLUME_ML = 5 * 8 * 8 / 1000.0


def _masks() -> tuple[np.ndarray, np.ndarray]:
    prediction, reference = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    for box in (A, B, D_REFERENCE):
        reference[box] = 1
    for box in (A, C, D_PREDICTED):
        prediction[box] = 1
    return prediction, reference


def two_raters(viewer) -> tuple[LesionReviewWidget, Labels, Labels]:
    """Two raters' masks (no subject, no run) in `viewer` and the review dock comparing them, not yet reviewed."""
    prediction, reference = _masks()
    pred = viewer.add_labels(prediction, name="rater 2")
    ref = viewer.add_labels(reference, name="rater 1")
    dock = _dock(viewer)
    dock.set_prediction(pred)
    dock.set_reference(ref)
    return dock, pred, ref


@pytest.fixture
def review(make_napari_viewer):
    """A viewer with two raters' masks (no subject, no run) and the review dock."""
    viewer = make_napari_viewer()
    dock, pred, ref = two_raters(viewer)
    dock.update(blocking=True)
    return viewer, dock, pred, ref


def _dock(viewer) -> LesionReviewWidget:
    dock = LesionReviewWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Lesion review")
    return dock


def _messages(since: int) -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[since:]]


def _notification_count() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def _shown_metrics(dock) -> dict[str, str]:
    """The metrics table (name, value, name, value per row) as a dict."""
    rows = dock._metrics.data.to_list()
    return {name: value for row in rows for name, value in (row[:2], row[2:]) if name}


def _row_of(dock, source: str, box) -> int:
    """The lesion row whose reference (or, for "prediction", predicted) lesion has its centroid in `box`."""
    for i, row in enumerate(dock.rows):
        lesions = [row.reference] if source == "reference" else list(row.predicted)
        for lesion in lesions:
            if lesion is not None and all(s.start <= c < s.stop for s, c in zip(box, lesion.centroid_voxel)):
                return i
    raise AssertionError(f"no {source} lesion in {box}")


def _canvas_pixel(viewer, canvas: np.ndarray, voxel_yx: tuple[float, float]) -> np.ndarray:
    """RGB of the screenshot pixel showing the centre of voxel (y, x) of a unit-scale layer."""
    height, width = canvas.shape[:2]
    centre_y, centre_x = camera(viewer).center[-2:]
    zoom = camera(viewer).zoom * height / viewer.window._qt_viewer.canvas.size[1]
    row = height / 2 + (voxel_yx[0] - centre_y) * zoom
    col = width / 2 + (voxel_yx[1] - centre_x) * zoom
    return canvas[int(round(row)), int(round(col)), :3].astype(int)


def test_overlay_shows_tp_green_fn_blue_fp_red_on_screen(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    prediction, reference = _masks()
    pred = viewer.add_labels(prediction, name="prediction", visible=False)
    ref = viewer.add_labels(reference, name="reference", visible=False)
    _, dock = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Lesion review")  # through the manifest
    assert isinstance(dock, LesionReviewWidget)
    dock.set_prediction(pred)
    dock.set_reference(ref)
    dock.update(blocking=True)
    dock.overlay.opacity = 1.0
    viewer.dims.set_point(0, 12)
    viewer.reset_view()
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    tp = _canvas_pixel(viewer, canvas, (6, 6))
    fn = _canvas_pixel(viewer, canvas, (6, 18))
    fp = _canvas_pixel(viewer, canvas, (18, 6))
    background = _canvas_pixel(viewer, canvas, (18, 18))
    assert tp[1] > 200 and tp[0] < 60 and tp[2] < 60, tp  # green
    assert fn[2] > 200 and fn[0] < 60 and fn[1] < 60, fn  # blue
    assert fp[0] > 200 and fp[1] < 60 and fp[2] < 60, fp  # red
    assert background.max() < 60, background


def test_overlays_metrics_and_lesion_table_match_the_engine(review, qtbot):
    viewer, dock, pred, ref = review
    voxel = dock.overlay.data
    assert voxel[12, 6, 6] == TP and voxel[12, 6, 18] == FN and voxel[12, 18, 6] == FP and voxel[12, 18, 18] == 0
    assert voxel[4, 16, 18] == FN  # the undetected half of D
    expected = compute_metrics(pred.data != 0, ref.data != 0, spacing=(1.0, 1.0, 1.0))
    shown = _shown_metrics(dock)
    assert shown["DSC"] == f"{expected['dsc']:.3f}"
    assert shown["LTPR"] == f"{expected['ltpr']:.3f}" and shown["LFPR"] == f"{expected['lfpr']:.3f}"
    assert shown["HD95 (mm)"] == f"{expected['hd95_mm']:.1f}"
    assert shown["APR"] == "n/a"  # two raters' masks: no probability map
    rows = dock._table_of_lesions.texts()
    assert len(rows) == expected["n_lesions_gt"] + expected["n_lesions_fp"] == 4  # one row per lesion
    assert sorted(row[0] for row in rows) == ["FN", "FP", "TP", "TP"]
    assert rows[_row_of(dock, "reference", B)][1] == f"{B_VOLUME_ML:.3f}"
    assert dock._plot.x.size == 0  # no curve without a probability map
    dock.set_mode("lesion")
    assert dock.overlay.data[4, 16, 18] == TP  # lesion-wise, D was detected: the whole lesion is TP
    assert dock.overlay.data[12, 6, 18] == FN and dock.overlay.data[12, 18, 6] == FP
    assert [layer.name for layer in viewer.layers].count(dock.overlay.name) == 1
    ref.data_setitem(np.nonzero(np.ones((2, 2, 2), bool)), 1)  # a rater paints a lesion: the review follows
    qtbot.waitUntil(lambda: dock.review.metrics["n_lesions_gt"] == expected["n_lesions_gt"] + 1, timeout=10_000)
    assert dock.overlay.data[0, 0, 0] == FN


def test_clicking_a_row_and_next_previous_move_the_view_to_the_lesion(review, qtbot):
    viewer, dock, _, _ = review
    viewer.dims.set_point(0, 20)
    table = dock._lesions.native
    row = _row_of(dock, "reference", D_REFERENCE)
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert dock.selected_lesion == row
    assert viewer.dims.current_step[0] == 4  # centroid of slices 3..5
    assert np.allclose(camera(viewer).center[-2:], (16.5, 16.5))
    seen = []
    for _ in range(len(dock.rows)):
        dock.next_lesion()
        seen.append(dock.selected_lesion)
    last = len(dock.rows) - 1
    assert sorted(seen) == list(range(len(dock.rows))) and seen[-1] == row  # every lesion once, back to the start
    dock.select_lesion(last)
    dock.next_lesion()
    assert dock.selected_lesion == 0  # wraps around
    dock.previous_lesion()
    assert dock.selected_lesion == last
    assert viewer.dims.current_step[0] == round(dock.rows[last].centroid_voxel[0])


def test_accept_and_reject_edit_the_corrected_mask(review):
    viewer, dock, pred, _ = review
    corrected = dock.new_corrected_mask()
    assert corrected is not None and np.array_equal(corrected.data, pred.data != 0)
    assert pred.data[C].all()
    dock.select_lesion(_row_of(dock, "prediction", C))
    dock.reject()
    assert not corrected.data[C].any() and pred.data[C].all()  # the prediction itself is untouched
    dock.accept(_row_of(dock, "reference", B))  # adopt the lesion the model missed
    assert corrected.data[B].all()
    rows = dock._table_of_lesions.texts()
    assert rows[_row_of(dock, "prediction", C)][4] == "removed"
    assert rows[_row_of(dock, "reference", B)][4] == "kept"
    assert rows[_row_of(dock, "reference", D_REFERENCE)][4] == "50% kept"
    corrected.undo()
    assert not corrected.data[B].any() and not corrected.data[C].any()  # napari's undo reverts one decision


def test_bad_states_are_notifications_not_tracebacks(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = _dock(viewer)
    start = _notification_count()
    assert dock.update() is None
    assert any("Nothing to review" in m for m in _messages(start))
    a = viewer.add_labels(np.zeros((8, 8, 8), np.uint8), name="mask A")
    b = viewer.add_labels(np.zeros((8, 8, 9), np.uint8), name="mask B")
    dock.set_prediction(a)
    dock.set_reference(b)
    start = _notification_count()
    dock.update(blocking=True)
    assert any("'mask A' has shape (8, 8, 8) but 'mask B' has shape (8, 8, 9)" in m for m in _messages(start))
    start = _notification_count()
    dock.reject()
    assert any("No corrected mask" in m for m in _messages(start))
    dock.set_reference(a)
    start = _notification_count()
    dock.update()
    assert any("both 'mask A'" in m for m in _messages(start))


# --- with a subject on disk: autosave, save and restore ---------------------------------------------------


def _open_subject(viewer, folder) -> dict[str, Layer]:
    for data, kwargs, layer_type in subject_layer_data(load_subject(folder)):
        viewer.add_layer(Layer.create(data, kwargs, layer_type))
    return {layer.name: layer for layer in viewer.layers}


def _prediction_layer(viewer, flair):
    """A prediction on the subject's grid: the reference minus its first lesion, plus a false positive."""
    reference = np.asarray(viewer.layers["reference mask"].data) != 0
    from napari_lesionseg.evaluation.lesions import label_lesions

    labels, _ = label_lesions(reference)
    prediction = (reference & (labels != 1)).astype(np.uint8)
    prediction[1:4, 1:4, 1:4] = 1
    return viewer.add_labels(
        prediction, name="prediction", scale=flair.scale, translate=flair.translate, metadata=dict(flair.metadata)
    )


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_autosave_writes_beside_the_subject_and_reopening_restores(make_napari_viewer, make_subject, qtbot, tmp_path):
    folder = make_subject(shape=SHAPE)
    reference_file = next(folder.glob("*_label-lesion_mask.nii.gz"))
    reference_hash = _sha(reference_file)
    viewer = make_napari_viewer()
    dock = _dock(viewer)
    layers = _open_subject(viewer, folder)
    dock.set_prediction(_prediction_layer(viewer, layers["FLAIR"]))
    assert dock._reference.value is layers["reference mask"]  # picked by default
    assert all(layer is not layers["reference mask"] for _, layer in dock._correction._correctable_layers())
    dock.update(blocking=True)
    corrected = dock.new_corrected_mask()
    dock.reject(_row_of(dock, "prediction", np.s_[1:4, 1:4, 1:4]))
    qtbot.waitUntil(lambda: dock.autosaver.last_saved is not None and not dock.autosaver.busy, timeout=10_000)
    saved = folder / f"sub-01_{CORRECTED_SUFFIX}.nii.gz"
    assert dock.autosaver.last_saved == saved
    assert np.array_equal(load_corrected_mask(saved), corrected.data != 0)
    start = _notification_count()
    assert dock.save_corrected(reference_file) is None  # nor by an explicit save
    assert any("inputs are never overwritten" in m for m in _messages(start))
    assert _sha(reference_file) == reference_hash
    written = dock.save_corrected(tmp_path / "out" / "fixed.nii.gz")
    assert np.array_equal(load_corrected_mask(written), corrected.data != 0)
    assert dock.save_corrected(written) == written  # its own earlier result may be saved again
    flair_file = next(folder.glob("*_FLAIR.nii.gz"))
    foreign = tmp_path / "out" / "someone_else.nii.gz"
    foreign.write_bytes(flair_file.read_bytes())
    hashes = {path: _sha(path) for path in (flair_file, foreign)}
    for refused, message in ((flair_file, "is the input"), (foreign, "was not written by napari-lesionseg"), (tmp_path / "sub-01_T1w.nii.gz", "named like")):
        start = _notification_count()
        assert dock.save_corrected(refused) is None  # the output policy of every command
        assert any(message in m for m in _messages(start)), _messages(start)
    assert {path: _sha(path) for path in hashes} == hashes

    second = make_napari_viewer()
    start = _notification_count()
    other = _dock(second)
    second_layers = _open_subject(second, folder)
    assert any("Found autosaved corrections" in m for m in _messages(start))
    assert other._correction.restore_button.enabled
    restored = other.restore_autosave()
    assert np.array_equal(restored.data, corrected.data != 0)
    assert other.autosaver.target.path == saved
    restored.data_setitem(np.nonzero(np.ones((1, 1, 1), bool)), 1)
    assert other.autosaver.flush() == saved  # what closing napari does: no wait for the timer
    assert load_corrected_mask(saved)[0, 0, 0] == 1
    previous = saved.with_name(f"sub-01_{CORRECTED_SUFFIX}_previous.nii.gz")
    assert not previous.exists()  # continuing a restored autosave just updates it
    other.set_prediction(_prediction_layer(second, second_layers["FLAIR"]))
    fresh = other.new_corrected_mask()  # starting afresh keeps the earlier corrections aside
    fresh.data_setitem((np.array([2]), np.array([2]), np.array([2])), 0)  # inside the false positive
    assert other.autosaver.flush() == saved
    assert np.array_equal(load_corrected_mask(previous), restored.data != 0)
    assert np.array_equal(load_corrected_mask(saved), fresh.data != 0)


# --- with an inference run: probability, APR, PR curve, mean probability per lesion ----------------------


def test_run_probability_feeds_apr_curve_and_mean_probability(make_napari_viewer, make_subject):
    folder = make_subject(shape=SHAPE)
    viewer = make_napari_viewer()
    dock = _dock(viewer)
    layers = _open_subject(viewer, folder)
    subject = load_subject(folder)
    config = model_config("compact", 4, input_stride2=False, dense_blocks_down=1, layers_per_block=1,
                          growth_rate=2, initial_features=4, multiscale_features=2, patch_size=[8, 8, 8])  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config)
    settings = InferenceSettings(patch_size=(8, 8, 8), overlap=0.0, tta="none", device="cpu", threshold=0.5)
    result = run_inference(model, normalize_stack(subject.stack(("FLAIR", "T1w", "T2w", "PDw"))), settings, size_divisor=2)
    mask_layer = viewer.add_labels(
        result.mask.astype(np.uint8), name="run mask", metadata=layer_metadata(subject.geometry),
        scale=layers["FLAIR"].scale, translate=layers["FLAIR"].translate,
    )  # fmt: skip
    metadata = CheckpointMetadata(name="tiny", model=config, loss="fbeta", beta=1.5,
                                  modalities=["FLAIR", "T1w", "T2w", "PDw"], patch_size=[8, 8, 8])  # fmt: skip
    run = RunRecord("tiny", metadata, settings, result, subject.geometry, {"mask": mask_layer.name})
    session_for(viewer).record(run)
    assert dock._prediction.value is mask_layer
    dock.update(blocking=True)
    expected = compute_metrics(result.mask, subject.mask.data, spacing=subject.geometry.spacing, prob=result.probability)
    shown = _shown_metrics(dock)
    assert shown["APR"] == f"{expected['apr']:.3f}"
    assert dock._plot.x.size > 1 and dock._plot.x.min() >= 0 and dock._plot.y.max() <= 1
    means = [row[3] for row in dock._table_of_lesions.texts()]
    assert means and all(m != "" for m in means)


class TestReadingSpeed:
    def test_a_lesion_click_zooms_and_rings_it(self, make_napari_viewer):
        viewer = make_napari_viewer()
        reference = np.zeros((40, 200, 200), np.uint8)
        reference[20:24, 150:154, 30:34] = 1  # a 64 mm^3 lesion in a 200 mm field
        ref = viewer.add_labels(reference, name="reference")
        pred = viewer.add_labels(reference.copy(), name="prediction")
        dock = _dock(viewer)
        dock.set_prediction(pred)
        dock.set_reference(ref)
        dock.update(blocking=True)
        viewer.reset_view()
        whole_volume_zoom = camera(viewer).zoom
        dock.select_lesion(0)
        assert camera(viewer).zoom > 1.5 * whole_volume_zoom  # about 100 mm of the 200 mm field
        marker = viewer.layers["selected lesion"]
        np.testing.assert_allclose(marker.data[0], (22, 151.5, 31.5))  # on the displayed slice
        assert np.allclose(camera(viewer).center[-2:], (151.5, 31.5)) and viewer.dims.current_step[0] == 22

    def test_bulk_reject_removes_only_false_positives_under_the_size(self, review):
        viewer, dock, pred, _ = review
        speck = (np.array([20]), np.array([20]), np.array([20]))
        pred.data_setitem(speck, 1)  # a 1-voxel false positive beside the 320-voxel one (C)
        dock.update(blocking=True)
        corrected = dock.new_corrected_mask()
        assert dock.reject_small_false_positives(max_mm3=5.0) == 1
        assert corrected.data[20, 20, 20] == 0 and corrected.data[C].all()  # C is 320 mm^3: kept
        assert dock.reject_small_false_positives(max_mm3=1000.0) == 2
        assert not corrected.data[C].any()

    def test_sorting_the_table_keeps_each_row_tied_to_its_lesion(self, review):
        viewer, dock, _, _ = review
        table = dock._lesions.native
        table.sortItems(2)  # by predicted volume
        row_b = _row_of(dock, "reference", B)
        dock.select_lesion(row_b)
        assert dock.selected_lesion == row_b
        assert dock._table_of_lesions.texts()[row_b][1] == f"{B_VOLUME_ML:.3f}"

    def test_automatic_updates_never_add_the_overlay_unasked(self, make_napari_viewer, qtbot):
        viewer = make_napari_viewer()
        dock, _, _ = two_raters(viewer)  # the dock reviews on its own, in the background
        qtbot.waitUntil(lambda: dock.review is not None and not dock.busy, timeout=10_000)
        assert "lesion review (TP/FN/FP)" not in viewer.layers
        dock.update(blocking=True)  # asked: now it shows
        assert "lesion review (TP/FN/FP)" in viewer.layers
