"""The app as the README's first command opens it: napari, the LesionSeg docks and a sample subject.

`python -m napari_lesionseg._napari.demo` opens the window; `--headless OUT_DIR` renders the same app (under a
virtual X screen) to screenshots plus a JSON summary of what is shown, then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import napari
import numpy as np

from napari_lesionseg import __version__
from napari_lesionseg._files import write_text_atomic
from napari_lesionseg._napari._demo_cases import thick_slice_case, write_thick_slice_copy
from napari_lesionseg._napari._demo_scanner import new_scanner_case
from napari_lesionseg._napari._demo_tools import raise_dock, screenshot, show_only_overlays, wait
from napari_lesionseg._napari._orientation import text_overlay
from napari_lesionseg._napari._session import session_for
from napari_lesionseg.data.samples import sample_subject

PLUGIN = "napari-lesionseg"
DOCKS = ("Subject", "Inference", "Fusion explorer", "Lesion review", "Fine-tune")
#: The demo's subject: the medium-load sample (the napari sample-data entry opens the first one).
DEMO_SUBJECT = 1
#: What `--beta 1.5` and the Inference dock pick for the sample's four inputs (`engine.choice.BUNDLED_PREFERENCE`).
DEMO_CHECKPOINT = "fbeta_1.5_generator"
#: The sample subject the real-looking (thick-slice) case is made from.
THICK_SUBJECT = 2


def build_app(viewer: napari.Viewer, subject: Path | None = None) -> dict[str, Any]:
    """Add the plugin's docks (as tabs) and open a sample subject; returns the dock widgets by name."""
    docks, frames = {}, []
    for name in DOCKS:
        frame, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        if frames:
            viewer.window._qt_window.tabifyDockWidget(frames[0], frame)
        frames.append(frame)
        docks[name] = widget
    frames[0].raise_()
    viewer.open(str(subject or sample_subject(DEMO_SUBJECT)), plugin=PLUGIN)
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
    """Render the app at each step of a session to `out_dir` (PNGs + summary.json); returns the summary.

    The session: open a sample subject, run inference live (screenshot midway), compare the fusion
    modes, review TP/FN/FP against the reference; then a subject of a new scanner is corrected and
    fine-tuned on, and the scanner's next subject segmented with the result (`_demo_scanner`); last,
    a thick-slice acquisition. It works on copies of the subjects and a private checkpoint folder, so
    nothing outside `out_dir` is written.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["LESIONSEG_HOME"] = str(out_dir / "lesionseg-home")
    subject = out_dir / "subject"
    shutil.rmtree(subject, ignore_errors=True)
    shutil.copytree(sample_subject(DEMO_SUBJECT), subject)

    viewer = napari.Viewer(show=True)
    shots: dict[str, str] = {}
    try:
        viewer.window._qt_window.resize(1700, 1150)
        opened = time.perf_counter()
        docks = build_app(viewer, subject)
        wait(lambda: len(viewer.layers) >= 4, "the subject to open")
        open_s = round(time.perf_counter() - opened, 1)
        viewer.reset_view()
        shots["app"] = screenshot(viewer, out_dir, "app.png")
        screenshot(viewer, out_dir, "canvas.png", canvas_only=True)
        summary = {**summarise(viewer, docks), "open_s": open_s}
        summary["inference"] = _live_inference(viewer, docks["Inference"], out_dir, shots)
        summary["fusion"] = _fusion_comparison(viewer, docks["Fusion explorer"], out_dir, shots)
        summary["review"] = _lesion_review(viewer, docks["Lesion review"], out_dir, shots)
        summary["new_scanner"] = new_scanner_case(viewer, docks, out_dir, shots, DEMO_CHECKPOINT)
        thick = write_thick_slice_copy(sample_subject(THICK_SUBJECT), out_dir / "thick-subject")
        summary["thick_slices"] = thick_slice_case(viewer, docks, thick, DEMO_CHECKPOINT, wait)
        raise_dock(docks["Inference"])
        shots["thick_slices"] = screenshot(viewer, out_dir, "thick_slices.png")
        summary["session_s"] = {
            "open": summary["open_s"], "run": summary["inference"]["wall_s"], "review": summary["review"]["wall_s"],
            "new_scanner_run_no_tta": summary["new_scanner"]["first_run"]["wall_s"],
            "fine_tune": summary["new_scanner"]["fine_tune"]["wall_s"],
            "next_subject_run_no_tta": summary["new_scanner"].get("next_subject", {}).get("wall_s"),
        }  # fmt: skip
        summary["layers_at_end"] = [layer.name for layer in viewer.layers]
        summary["screenshots"] = shots
        canvas = np.asarray(viewer.screenshot(canvas_only=True))
        summary["canvas_nonblack_fraction"] = float((canvas[..., :3].max(axis=-1) > 10).mean())
        write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary
    finally:
        viewer.close()


def _live_inference(viewer: napari.Viewer, dock: Any, out_dir: Path, shots: dict[str, str]) -> dict[str, Any]:
    """Run the inference dock, screenshot it midway (paused), then let it finish."""
    raise_dock(dock)
    dock.select_checkpoint(DEMO_CHECKPOINT)
    started = time.perf_counter()
    worker = dock.run(pause_after=25)
    wait(lambda: worker.is_paused or not dock.busy, "inference to reach its midway pause")
    done_midway, total = dock.progress
    shots["inference_live"] = screenshot(viewer, out_dir, "inference_live.png")
    paused_s = time.perf_counter() - started
    worker.resume()
    resumed = time.perf_counter()
    wait(lambda: not dock.busy, "inference to finish", timeout=900)
    wall_s = paused_s + time.perf_counter() - resumed  # the click on Run to the last layer, minus the pause
    run = session_for(viewer).latest
    shots["inference_done"] = screenshot(viewer, out_dir, "inference_done.png")
    return {
        "checkpoint": DEMO_CHECKPOINT,
        "patches_midway": done_midway,
        "patches_total": total,
        "completed": bool(run and run.result.completed),
        "engine_s": run.result.timings.get("total") if run else None,
        "wall_s": round(wall_s, 1),
        "device": run.result.device if run else None,
    }


def _fusion_comparison(viewer: napari.Viewer, dock: Any, out_dir: Path, shots: dict[str, str]) -> dict[str, Any]:
    """Show the patch grid and the spline weights, then tiling / uniform / spline side by side."""
    raise_dock(dock)
    dock.show_grid()
    worker = dock.show_weights("spline")
    if worker is not None:
        wait(lambda: not dock.busy, "the fusion weight sum")
    shots["fusion_weights"] = screenshot(viewer, out_dir, "fusion_weights.png")
    worker = dock.compare()
    if worker is not None:
        wait(lambda: not dock.busy, "the per-mode metrics")
    shots["fusion_compare"] = screenshot(viewer, out_dir, "fusion_compare.png")
    status = str(dock._status.value)
    dock.end_compare()
    return {"status": status}


def _lesion_review(viewer: napari.Viewer, dock: Any, out_dir: Path, shots: dict[str, str]) -> dict[str, Any]:
    """Review the run's mask against the reference: TP/FN/FP overlay, metrics, lesion table."""
    raise_dock(dock)
    started = time.perf_counter()
    dock.set_reference(viewer.layers["reference mask"])
    dock.update(blocking=True)
    dock.set_mode("voxel")
    if dock.rows:
        dock.select_lesion(_largest_reference_lesion(dock.rows))
    show_only_overlays(viewer, keep=("FLAIR", "lesion review", "selected lesion"))
    shots["review"] = screenshot(viewer, out_dir, "review.png")
    review = dock.review
    metrics = {k: review.metrics.get(k) for k in ("dsc", "sensitivity", "ppv", "ltpr", "lfpr")} if review else {}
    wall_s = round(time.perf_counter() - started, 1)
    return {"metrics": metrics, "lesions": len(dock.rows), "plane": text_overlay(viewer).text, "wall_s": wall_s}


def _largest_reference_lesion(rows: Sequence[Any]) -> int:
    """Index of the row of the largest reference lesion (the first row when there is none)."""
    reference = [i for i, row in enumerate(rows) if row.reference is not None]
    return max(reference, key=lambda i: rows[i].reference_ml) if reference else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_lesionseg._napari.demo", description=__doc__)
    parser.add_argument("--headless", metavar="OUT_DIR", type=Path, help="render to OUT_DIR and exit")
    args = parser.parse_args(argv)
    if args.headless:
        summary = run_headless(args.headless)
        names = ", ".join(summary["screenshots"].values())
        print(f"wrote {args.headless}: {names}, canvas.png, summary.json")
        return 0
    viewer = napari.Viewer()
    build_app(viewer)
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
