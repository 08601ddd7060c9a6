"""A dock's status never cuts a long message: the box holds the whole text and scrolls to it."""

from __future__ import annotations

import pytest

from napari_lesionseg._napari._status_box import STATUS_LINES, status_box
from napari_lesionseg._napari.docks import InferenceWidget

LONG = (
    "fbeta_1.5, beta 1.5: 210 patches in 19.0 s on cpu (bfloat16). The input has the model's spacing "
    "(2.00x2.00x2.00 mm): nothing was resampled. 12 lesions, 3.4 mL; the mask drops lesions under 3 mm^3. "
    "Switch runs in the Fusion explorer, or review the lesions one by one in the Lesion review dock."
)


def test_the_whole_text_is_kept_and_reachable_by_scrolling(qtbot):
    box = status_box(lines=2)
    qtbot.addWidget(box.native)
    box.native.resize(300, box.native.height())
    box.native.show()
    box.value = LONG
    assert box.value == LONG
    line = box.native.fontMetrics().lineSpacing()
    assert 2 * line <= box.native.height() < 4 * line
    bar = box.native.verticalScrollBar()
    assert bar.maximum() > 0  # the rest of the message is below, one scroll away
    assert box.native.isReadOnly()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_inference_dock_shows_its_status_lines_tall(make_napari_viewer):
    dock = InferenceWidget(make_napari_viewer())
    dock._status.value = LONG
    assert dock._status.value == LONG
    assert dock._status.native.height() >= STATUS_LINES * dock._status.native.fontMetrics().lineSpacing()
