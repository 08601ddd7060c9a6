"""Fusion explorer in a real headless viewer, on a run of the Inference dock (tiny random network)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg._napari._session import session_for
from napari_lesionseg._napari.docks import FusionExplorerWidget, InferenceWidget
from napari_lesionseg.engine.fusion import weight_kernel
from napari_lesionseg.evaluation.compare import central_patch, weight_sum
from napari_lesionseg.evaluation.metrics import compute_metrics

from .test_inference import (
    RUN_TIMEOUT_MS,
    SHAPE,
    add_subject,
    notification_count,
    notifications_since,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
slow = pytest.mark.slow  # every test but the last runs the network once (in the fixture)


@pytest.fixture
def explorer(qtbot, home, make_napari_viewer, make_subject):
    """A shown viewer with a subject, one finished run ("beta 1") and the Fusion explorer."""
    viewer = make_napari_viewer(show=True)
    add_subject(viewer, make_subject(shape=SHAPE))
    inference = InferenceWidget(viewer)
    inference.set_options(tta=False, batch_size=8)
    inference.run()
    qtbot.waitUntil(lambda: not inference.busy, timeout=RUN_TIMEOUT_MS)
    dock = FusionExplorerWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Fusion explorer")
    return viewer, dock, session_for(viewer).latest


def wait_until_idle(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.busy, timeout=RUN_TIMEOUT_MS)


def canvas_difference(viewer, layer) -> int:
    """Pixels the canvas changes by when `layer` is hidden (0: the layer shows nothing)."""
    shown = viewer.screenshot(canvas_only=True).astype(int)
    layer.visible = False
    hidden = viewer.screenshot(canvas_only=True).astype(int)
    layer.visible = True
    return int(np.abs(shown - hidden).sum())


@slow
class TestGrid:
    def test_patch_boxes_are_outlined_on_the_displayed_slice_and_in_3d(self, explorer):
        viewer, dock, record = explorer
        flair = viewer.layers["FLAIR"]
        viewer.dims.set_point(0, flair.data_to_world((10, 0, 0))[0])
        layer = dock.show_grid()
        assert layer.name == "patch grid [beta 1]"
        # 24^3 with 16^3 patches at 50 %: origins 0 and 8 per axis; slice 10 lies in both z rows,
        # which share their 2 x 2 in-plane footprints
        assert len(layer.data) == 4 and set(layer.shape_type) == {"rectangle"}
        assert all(np.allclose(rect[:, 0], 10) for rect in layer.data)
        assert canvas_difference(viewer, layer) > 0

        viewer.dims.set_point(0, flair.data_to_world((3, 0, 0))[0])
        assert all(np.allclose(rect[:, 0], 3) for rect in layer.data)  # follows the slider

        viewer.dims.ndisplay = 3
        assert len(layer.data) == 2 * len(record.result.grid) and set(layer.shape_type) == {"path"}
        corners = np.concatenate(layer.data)
        assert corners.min(axis=0) == pytest.approx([-0.5] * 3) and corners.max(axis=0) == pytest.approx([23.5] * 3)

    def test_removing_the_overlay_layer_stops_it_following_the_viewer(self, explorer):
        viewer, dock, _ = explorer
        layer = dock.show_grid()
        viewer.layers.remove(layer)
        viewer.dims.set_point(0, viewer.dims.point[0] + 1)  # would fail if the overlay still redrew
        assert layer not in viewer.layers


@slow
class TestWeights:
    def test_kernel_sits_on_the_central_patch_and_the_sum_is_the_runs(self, explorer):
        viewer, dock, record = explorer
        assert dock.show_weights("spline") is None
        kernel = viewer.layers["weight kernel [spline · beta 1]"]
        sums = viewer.layers["weight sum [spline · beta 1]"]
        np.testing.assert_array_equal(kernel.data, weight_kernel("spline", (16, 16, 16)))
        origin = record.result.grid.origins[central_patch(record.result.grid)]
        flair = viewer.layers["FLAIR"]
        assert kernel.translate == pytest.approx(flair.translate + origin * flair.scale)
        assert sums.data is record.result.weight_sums["spline"]
        assert viewer.layers.index(kernel) > viewer.layers.index(sums)  # the kernel is drawn above the sum

    def test_a_mode_the_run_did_not_fuse_is_computed_off_the_gui_thread(self, qtbot, explorer):
        viewer, dock, record = explorer
        worker = dock.show_weights("gaussian")
        assert worker is not None
        wait_until_idle(qtbot, dock)
        expected = weight_sum(record.result.grid, "gaussian")
        np.testing.assert_allclose(viewer.layers["weight sum [gaussian · beta 1]"].data, expected)


class TestCompare:
    @slow
    def test_three_modes_and_their_disagreement_side_by_side_without_a_second_run(self, qtbot, explorer):
        viewer, dock, record = explorer
        before = [(layer.name, layer.visible) for layer in viewer.layers]
        dock.compare()
        wait_until_idle(qtbot, dock)
        grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
        assert grid.enabled and grid.stride == 4
        names = [layer.name for layer in viewer.layers][:16]
        assert names == [
            "FLAIR (tiling) [beta 1]", "tiling probability [beta 1]", "tiling mask [beta 1]", "title: tiling [beta 1]",
            "FLAIR (uniform) [beta 1]", "uniform probability [beta 1]", "uniform mask [beta 1]",
            "title: uniform [beta 1]",
            "FLAIR (spline) [beta 1]", "spline probability [beta 1]", "spline mask [beta 1]", "title: spline [beta 1]",
            "FLAIR (disagreement) [beta 1]", "fusion disagreement [beta 1]", "masks disagree [beta 1]",
            "title: disagreement [beta 1]",
        ]  # fmt: skip
        assert all(layer.visible for layer in viewer.layers[:16])
        assert not any(layer.visible for layer in viewer.layers[16:])
        assert [viewer.layers[f"title: {t} [beta 1]"].text.values[0] for t in ("tiling", "uniform", "spline")] == [
            "tiling", "uniform", "spline",
        ]  # each panel says what it shows
        probabilities = record.result.probabilities
        for mode in ("tiling", "uniform", "spline"):  # the run's own arrays: nothing was predicted again
            assert viewer.layers[f"{mode} probability [beta 1]"].data is probabilities[mode]
        spread = np.max([probabilities[m] for m in ("tiling", "uniform", "spline")], axis=0) - np.min(
            [probabilities[m] for m in ("tiling", "uniform", "spline")], axis=0
        )
        np.testing.assert_allclose(viewer.layers["fusion disagreement [beta 1]"].data, spread)
        assert spread.max() > 0  # tiling differs from averaging somewhere on an overlapping grid

        reference = viewer.layers["reference mask"].data > 0
        for mode in ("tiling", "uniform", "spline"):
            expected = compute_metrics(probabilities[mode] >= 0.5, reference, spacing=record.geometry.spacing)
            assert dock.metrics[mode]["dsc"] == pytest.approx(expected["dsc"])
        table = dock._table.value
        assert list(table["columns"]) == ["tiling", "uniform", "spline"] and table["index"][0] == "DSC"

        shot = viewer.screenshot(canvas_only=True)[..., :3].max(axis=-1)
        half_y, half_x = shot.shape[0] // 2, shot.shape[1] // 2
        quadrants = [shot[:half_y, :half_x], shot[:half_y, half_x:], shot[half_y:, :half_x], shot[half_y:, half_x:]]
        assert all((quadrant > 20).mean() > 0.05 for quadrant in quadrants)  # four views with content

        dock.end_compare()
        assert not grid.enabled and not dock.comparing
        assert [(layer.name, layer.visible) for layer in viewer.layers] == before

    def test_back_to_single_view_leaves_the_weight_heatmaps_hidden(self, qtbot, explorer):
        viewer, dock, record = explorer
        dock.show_weights("spline")
        wait_until_idle(qtbot, dock)
        heatmaps = [layer for layer in viewer.layers if layer.name.startswith(("weight sum", "weight kernel"))]
        assert heatmaps and all(layer.visible for layer in heatmaps)
        dock.compare()
        wait_until_idle(qtbot, dock)
        dock.end_compare()
        assert not any(layer.visible for layer in heatmaps)  # they would cover the image
        assert viewer.layers["FLAIR"].visible

    @slow
    def test_no_reference_mask_means_no_metrics_but_still_the_views(self, explorer):
        viewer, dock, _ = explorer
        dock._reference.value = None
        assert dock.compare() is None
        assert dock.comparing and dock.metrics == {}

    def test_without_any_run_the_user_is_told_what_to_do(self, home, make_napari_viewer):
        viewer = make_napari_viewer()
        dock = FusionExplorerWidget(viewer)
        start = notification_count()
        assert dock.compare() is None and dock.show_grid() is None
        assert any("run one in the Inference dock" in m for m in notifications_since(start))
