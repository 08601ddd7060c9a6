"""The app as the README's first command opens it: napari, the LesionSeg docks and a sample subject.

`python -m napari_lesionseg._demo` opens the window; `--headless OUT_DIR` renders the same app (under a
virtual X screen) to screenshots plus a JSON summary of what is shown, then exits.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import napari
import numpy as np

from napari_lesionseg import __version__
from napari_lesionseg._files import write_text_atomic
from napari_lesionseg.samples import sample_subject

PLUGIN = "napari-lesionseg"
DOCKS = ("Subject",)


def build_app(viewer: napari.Viewer) -> dict[str, Any]:
    """Add the plugin's docks and open the first sample subject; returns the dock widgets by name."""
    docks = {}
    for name in DOCKS:
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        docks[name] = widget
    viewer.open(str(sample_subject(0)), plugin=PLUGIN)
    _show_mid_lesion_slice(viewer)
    return docks


def _show_mid_lesion_slice(viewer: napari.Viewer) -> None:
    """Move the axial slider to the slice with the most reference-lesion voxels (if there is a mask)."""
    masks = [layer for layer in viewer.layers if layer.name == "reference mask"]
    if not masks:
        return
    mask = np.asarray(masks[0].data)
    counts = mask.reshape(mask.shape[0], -1).astype(bool).sum(axis=1)
    index = int(np.argmax(counts)) if counts.any() else mask.shape[0] // 2
    world_z = masks[0].data_to_world((index, 0, 0))[0]
    viewer.dims.set_point(0, world_z)


def summarise(viewer: napari.Viewer, docks: dict[str, Any]) -> dict[str, Any]:
    """What the app shows, as JSON-able data."""
    return {
        "version": __version__,
        "napari": napari.__version__,
        "docks": sorted(docks),
        "current_step": [int(s) for s in viewer.dims.current_step],
        "layers": [
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "shape": [int(n) for n in layer.data.shape],
                "scale_mm": [float(s) for s in layer.scale],
                "translate_mm": [float(t) for t in layer.translate],
                "visible": bool(layer.visible),
            }
            for layer in viewer.layers
        ],
    }


def run_headless(out_dir: Path) -> dict[str, Any]:
    """Render the app to `out_dir` (app.png, canvas.png, summary.json) and return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    try:
        viewer.window._qt_window.resize(1500, 950)
        docks = build_app(viewer)
        viewer.reset_view()
        napari.qt.get_qapp().processEvents()
        viewer.screenshot(str(out_dir / "app.png"), canvas_only=False)
        canvas = viewer.screenshot(str(out_dir / "canvas.png"), canvas_only=True)
        summary = summarise(viewer, docks)
        summary["screenshots"] = ["app.png", "canvas.png"]
        summary["canvas_nonblack_fraction"] = float((np.asarray(canvas)[..., :3].max(axis=-1) > 10).mean())
        write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
        return summary
    finally:
        viewer.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_lesionseg._demo", description=__doc__)
    parser.add_argument("--headless", metavar="OUT_DIR", type=Path, help="render to OUT_DIR and exit")
    args = parser.parse_args(argv)
    if args.headless:
        summary = run_headless(args.headless)
        print(f"wrote {args.headless}/app.png, canvas.png, summary.json ({len(summary['layers'])} layers)")
        return 0
    viewer = napari.Viewer()
    build_app(viewer)
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
