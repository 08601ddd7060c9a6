"""Radiological display: coronal and sagittal slices with superior at the top, planes named with their position."""

import warnings

import numpy as np

from napari_lesionseg._napari._orientation import camera, plane_text, show_radiological, text_overlay


def _head_with_a_marker_at_the_top(viewer):
    """A bright block at the superior end (high S index) of an otherwise dim volume, 1 mm voxels."""
    volume = np.full((40, 40, 40), 10.0, np.float32)
    volume[34:38, 16:24, 16:24] = 1000.0
    return viewer.add_image(volume, name="FLAIR", contrast_limits=(0, 1000))


def _bright_rows(screenshot: np.ndarray) -> np.ndarray:
    grey = screenshot[..., :3].mean(axis=-1)
    return np.nonzero((grey > 200).any(axis=1))[0]


def test_coronal_and_sagittal_views_have_superior_at_the_top(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    _head_with_a_marker_at_the_top(viewer)
    show_radiological(viewer)
    for order in ((1, 0, 2), (2, 0, 1)):  # coronal (P sliced), sagittal (L sliced)
        viewer.dims.order = order
        viewer.dims.set_point(order[0], 20)
        viewer.reset_view()
        shot = viewer.screenshot(canvas_only=True, flash=False)
        rows = _bright_rows(shot)
        assert rows.size and rows.mean() < shot.shape[0] / 2, order  # the marker is in the upper half
    viewer.dims.order = (0, 1, 2)  # axial: S sliced, anterior (P = 0) at the top as before
    assert camera(viewer).orientation2d[0] == "down"


def test_the_plane_and_its_position_are_shown(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((10, 10, 10), np.float32), scale=(2.0, 1.0, 1.0), translate=(-4.0, 0.0, 0.0))
    show_radiological(viewer)
    viewer.dims.set_point(0, 6.0)
    assert plane_text(viewer) == "Axial · S 6.0 mm" and text_overlay(viewer).text == "Axial · S 6.0 mm"
    viewer.dims.order = (1, 0, 2)
    assert plane_text(viewer).startswith("Coronal · P")
    assert tuple(viewer.dims.axis_labels) == ("S", "P", "L")


def test_the_camera_is_reached_without_napari_deprecation_warnings(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((10, 10, 10), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        show_radiological(viewer)
        viewer.dims.order = (1, 0, 2)
        view = camera(viewer)
    assert view.orientation2d[0] == "up"  # the coronal view's S axis turned up, on the camera napari draws with
    assert view is getattr(getattr(viewer, "scene", viewer), "camera")
