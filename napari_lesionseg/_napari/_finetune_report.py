"""What the Fine-tune dock says while a fine-tune runs and when it ends (plain text from its progress and outcome)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Layer

from napari_lesionseg._napari.metadata import geometry_from_layer_metadata
from napari_lesionseg.evaluation.tables import format_metric

if TYPE_CHECKING:
    from napari_lesionseg.training import TrainingProgress
    from napari_lesionseg.training.corrections import FineTuneOutcome

__all__ = ["finished_text", "held_out_text", "layer_spacing", "progress_text"]


def progress_text(step: TrainingProgress) -> str | None:
    """The status line for a progress event (None: the event changes nothing the user reads)."""
    if step.phase == "baseline":
        measured = f"Starting model on the corrected mask: DSC {format_metric('dsc', step.metrics.get('dsc'))}. " if step.metrics else ""
        return f"{measured}Training..."
    if step.phase == "check":
        return "Scoring the check subjects with the starting model..."
    if step.phase == "train":
        return f"Step {step.step} / {step.total_steps}: loss {step.loss:.4f} ({step.elapsed_s:.0f} s)"
    if step.phase == "held_out":
        return held_out_text(step)
    if step.phase == "validate":
        return "Measuring the fine-tuned model..."
    return None


def held_out_text(step: TrainingProgress) -> str:
    """The held-out slab's score at a step, and the best so far."""
    m = step.metrics or {}
    return (
        f"Step {step.step} / {step.total_steps}: held-out DSC {m.get('dsc', float('nan')):.3f} (best "
        f"{m.get('best_dsc', float('nan')):.3f} at step {int(m.get('best_step', 0))}), "
        f"{int(m.get('fp_lesions', 0))} false lesions there"
    )


def finished_text(outcome: FineTuneOutcome) -> str:
    """What a finished (or cancelled) fine-tune did, short enough for the dock's status line (the tables say the rest)."""
    if outcome.checkpoint is None:
        return (
            f"Cancelled after {outcome.steps} of {outcome.total_steps} steps: nothing saved, "
            f"{outcome.parent!r} is unchanged."
        )
    kept = "kept the starting weights" if outcome.best_step == 0 else f"kept step {outcome.best_step}"
    stopped = {"patience": ", stopped early", "time": ", stopped at the time limit"}.get(outcome.stopped or "", "")
    replayed = f", replayed {len(outcome.replayed)} case(s)" if outcome.replayed else ""
    replayed += f", rehearsed {len(outcome.rehearsed)} generator subject(s)" if outcome.rehearsed else ""
    return (
        f"Saved {outcome.name!r} from {outcome.parent!r}: {outcome.steps} of {outcome.total_steps} steps{stopped}, "
        f"{kept}{replayed}, {outcome.elapsed_s:.0f} s."
    )


def layer_spacing(mask_layer: Layer, image: Layer) -> tuple[float, float, float]:
    """The voxel size (mm) of the mask's grid (its recorded geometry, else the image's, else the layer scale)."""
    geometry = geometry_from_layer_metadata(mask_layer.metadata) or geometry_from_layer_metadata(image.metadata)
    spacing = geometry.spacing if geometry is not None else image.scale[-3:]
    return tuple(float(s) for s in spacing)  # type: ignore[return-value]
