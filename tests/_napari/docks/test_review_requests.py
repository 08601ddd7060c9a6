"""What the user asked of the Lesion review dock survives the automatic reviews running beside it."""

from __future__ import annotations

import numpy as np
import pytest

from .test_review import _dock, _masks, _messages, _notification_count, two_raters

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OVERLAY = "lesion review (TP/FN/FP)"


@pytest.fixture
def pair(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, _, _ = two_raters(viewer)
    return viewer, dock


def test_update_review_clicked_while_an_automatic_review_runs_shows_the_overlay(pair, qtbot):
    viewer, dock = pair
    assert dock.update(quiet=True) is not None  # an automatic review, in flight until the event loop runs
    dock.update()  # the user's click meanwhile
    qtbot.waitUntil(lambda: OVERLAY in viewer.layers and not dock.busy, timeout=10_000)


def test_an_automatic_review_that_fails_says_so_in_the_status_only(pair, qtbot):
    viewer, dock = pair
    qtbot.waitUntil(lambda: dock.review is not None and not dock.busy, timeout=10_000)
    other = viewer.add_labels(np.zeros((10, 10, 10), np.uint8), name="elsewhere")
    before = _notification_count()
    dock.set_reference(other)  # reviewed on its own, in the background
    qtbot.waitUntil(lambda: "elsewhere" in dock._status.value and not dock.busy, timeout=10_000)
    assert _messages(before) == []
    dock.update()
    qtbot.waitUntil(lambda: bool(_messages(before)), timeout=10_000)
    assert len(_messages(before)) == 1 and "elsewhere" in _messages(before)[0]


def test_walking_the_lesions_leaves_the_corrected_mask_the_layer_painted(pair):
    viewer, dock = pair
    dock.update(blocking=True)
    corrected = dock.new_corrected_mask()
    assert viewer.layers.selection.active is corrected
    dock.select_lesion(0)
    dock.next_lesion()
    assert viewer.layers.selection.active is corrected


def test_a_prediction_without_a_reference_says_how_to_walk_its_lesions(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = _dock(viewer)
    dock.set_prediction(viewer.add_labels(_masks()[0], name="run mask"))
    before = _notification_count()
    assert dock.update() is None
    (message,) = _messages(before)
    assert message.startswith("No reference to review 'run mask' against") and "'New from prediction'" in message
