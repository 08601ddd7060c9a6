"""Coronal and sagittal pictures beside the canvas: superior at the top, radiological, linked to the point."""

import numpy as np

from napari_lesionseg._napari._ortho_views import OrthoViews, plane_rgb
from napari_lesionseg.constants import FP, TP


def test_superior_is_at_the_top_and_right_on_the_left():
    image = np.zeros((20, 30, 40), np.float32)
    image[18, 10, 5] = 100.0  # superior (high S), towards the patient's right (low L index)
    rgb = plane_rgb(image, None, (5, 10, 20), axis=1, limits=(0.0, 100.0))  # coronal through P = 10
    assert rgb.shape == (20, 40, 3)
    bright = np.argwhere((rgb == 255).all(axis=-1) & (rgb.sum(axis=-1) == 765))
    assert (1, 5) in {tuple(b) for b in bright}  # row 1 = S 18 (top), column 5 = L 5 (screen left)


def test_overlay_colours_and_crosshair_mark_the_point():
    image = np.zeros((10, 10, 10), np.float32)
    overlay = np.zeros((10, 10, 10), np.uint8)
    overlay[7, 2, 2], overlay[7, 2, 7] = TP, FP  # off the crosshair's row (S = 4)
    rgb = plane_rgb(image, overlay, (4, 2, 5), axis=1, limits=(0.0, 1.0))
    row = 10 - 1 - 7
    assert rgb[row, 2, 1] > rgb[row, 2, 0] and rgb[row, 7, 0] > rgb[row, 7, 1]  # TP green, FP red
    assert (rgb[:, 5] == (255, 255, 0)).all(axis=-1).sum() >= 4  # the crosshair's column


def test_the_planes_follow_the_viewers_point(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(0).random((12, 14, 16), dtype=np.float32), scale=(2.0, 1.0, 1.0))
    views = OrthoViews(viewer)
    views.show(layer)
    for axis, world in enumerate((10.0, 3.0, 7.0)):
        viewer.dims.set_point(axis, world)
    assert views.voxel() == (5, 3, 7)
    assert views.titles[1].value == "Coronal · P 3.0 mm" and not views.pictures[1].pixmap().isNull()
    assert views.pictures[2].pixmap().height() == 160
