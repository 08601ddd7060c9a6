"""The headless demo's retrain loop on a new scanner: correct one subject, fine-tune, and the next one improves.

Two 2 mm phantoms of a second scanner (`lesionseg sample --contrast low`: lower lesion contrast on
FLAIR, a flatter T1w, more noise), with seeds of their own (neither the sample data's, nor the
training's, nor the payoff script's). The first is segmented with the bundled model; in the Lesion
review its false lesions are rejected and its missed ones accepted, as a clinician would; the
Fine-tune dock trains on that correction with its defaults while scoring the second subject, which
it never trains on. Then the second subject is opened and segmented with the fine-tuned model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import napari

from napari_lesionseg._napari._demo_tools import raise_dock, screenshot, scroll_to, show_only_overlays, wait
from napari_lesionseg._napari._session import session_for

__all__ = ["CORRECTED_SEED", "NEXT_SEED", "SCANNER", "new_scanner_case", "write_new_scanner"]

SCANNER = "low"
CORRECTED_SEED, NEXT_SEED = 9201, 9202
#: The review metrics kept in the summary.
_KEPT = ("dsc", "sensitivity", "ppv", "ltpr", "lfpr", "n_lesions_fp")


def write_new_scanner(out: Path) -> tuple[Path, Path]:
    """Write the new scanner's two subjects under `out` (the one to correct, the next one)."""
    from napari_lesionseg.data.phantom import make_phantom, write_phantom

    folders = []
    for name, seed in (("sub-scanner2a", CORRECTED_SEED), ("sub-scanner2b", NEXT_SEED)):
        folders.append(write_phantom(make_phantom(seed, spacing=2.0, contrast=SCANNER), out, name))
    return folders[0], folders[1]


def new_scanner_case(
    viewer: napari.Viewer, docks: dict[str, Any], out_dir: Path, shots: dict[str, str], checkpoint: str
) -> dict[str, Any]:
    """Correct the first new-scanner subject, fine-tune on it, segment the next one; screenshots and numbers."""
    first, following = write_new_scanner(out_dir / "new-scanner")
    inference, review, tune = docks["Inference"], docks["Lesion review"], docks["Fine-tune"]
    summary: dict[str, Any] = {"scanner": SCANNER, "subjects": [first.name, following.name]}
    summary["first_run"] = _segment_and_review(viewer, inference, review, first, checkpoint, "new scanner")
    corrected = review.new_corrected_mask()
    decided = 0
    for index, row in enumerate(review.rows):  # adopt the missed lesions, reject the false ones
        if row.status in ("FN", "FP"):
            (review.accept if row.status == "FN" else review.reject)(index)
            decided += 1
    summary["lesions_corrected"] = decided
    raise_dock(tune)
    tune.refresh_checkpoints()
    tune.set_checkpoint(checkpoint)
    tune.set_mask(corrected)
    tune.clear_folders()
    tune.add_check_folder(following)
    started = time.perf_counter()
    tune.start()
    wait(lambda: not tune.busy, "fine-tuning", timeout=900)
    summary["fine_tune"] = _outcome(tune.outcome, time.perf_counter() - started)
    show_only_overlays(viewer, keep=("FLAIR", "corrected mask"))
    viewer.reset_view()
    scroll_to(tune, tune._checked)  # the next subject's before / after, at the bottom of the dock
    shots["fine_tune"] = screenshot(viewer, out_dir, "finetune.png")
    if tune.outcome is None or tune.outcome.checkpoint is None:
        return summary
    summary["next_subject"] = _segment_and_review(viewer, inference, review, following, tune.outcome.name, "fine-tuned")
    shots["next_subject"] = screenshot(viewer, out_dir, "next_subject.png")
    return summary


def _segment_and_review(
    viewer: napari.Viewer, inference: Any, review: Any, folder: Path, checkpoint: str, run_name: str
) -> dict[str, Any]:
    """Open `folder` in place of what is shown, segment it (no test-time flips, for time) and review it."""
    viewer.layers.clear()
    inference.open_folder(folder)
    wait(lambda: "FLAIR" in viewer.layers and "reference mask" in viewer.layers, f"{folder.name} to open")
    inference.refresh_checkpoints()
    inference.select_checkpoint(checkpoint)
    inference.set_options(tta=False, run_name=run_name, keep_runs=False)
    started = time.perf_counter()
    inference.run()
    wait(lambda: not inference.busy, f"the {run_name} run", timeout=900)
    wall_s = round(time.perf_counter() - started, 1)
    run = session_for(viewer).latest
    raise_dock(review)
    review.set_prediction(viewer.layers[run.layers["mask"]])
    review.set_reference(viewer.layers["reference mask"])
    review.update(blocking=True)
    review.set_mode("lesion")
    show_only_overlays(viewer, keep=("FLAIR", "lesion review"))
    metrics = review.review.metrics if review.review is not None else {}
    return {"subject": folder.name, "checkpoint": checkpoint, "wall_s": wall_s, **{k: metrics.get(k) for k in _KEPT}}


def _outcome(outcome: Any, wall_s: float) -> dict[str, Any]:
    if outcome is None:
        return {"wall_s": round(wall_s, 1)}
    return {
        "wall_s": round(wall_s, 1), "checkpoint": outcome.name, "steps": outcome.steps, "best_step": outcome.best_step,
        "stopped": outcome.stopped, "before": outcome.before, "after": outcome.after,
        "next_subject_before": outcome.checked_before, "next_subject_after": outcome.checked_after,
    }  # fmt: skip
