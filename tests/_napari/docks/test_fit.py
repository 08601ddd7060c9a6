"""Every dock fits a laptop screen: its contents scroll, so its minimum height stays well under 900 px."""

import pytest

from napari_lesionseg._napari.docks import (
    FineTuneWidget,
    FusionExplorerWidget,
    InferenceWidget,
    LesionReviewWidget,
    SubjectWidget,
)

DOCKS = (SubjectWidget, InferenceWidget, FusionExplorerWidget, LesionReviewWidget, FineTuneWidget)
LAPTOP_HEIGHT = 900


@pytest.mark.parametrize("dock_class", DOCKS, ids=lambda c: c.__name__)
def test_each_dock_needs_less_than_a_laptop_screen(dock_class, make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    viewer = make_napari_viewer()
    dock = dock_class(viewer)
    assert dock.native.minimumSizeHint().height() < LAPTOP_HEIGHT / 2


def test_all_five_docks_tabbed_leave_the_window_shorter_than_a_laptop_screen(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    for dock_class in DOCKS:
        viewer.window.add_dock_widget(dock_class(viewer), name=dock_class.__name__, tabify=True)
    assert viewer.window._qt_window.minimumSizeHint().height() < LAPTOP_HEIGHT

