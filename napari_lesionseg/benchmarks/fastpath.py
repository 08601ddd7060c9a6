"""What the fast path costs in accuracy, and how soon the displayed slice is fully fused.

* Accuracy: a trained network on the sample subject, the engine's former path (float32, every
  patch, the network as trained) against the fast path (the resolved precision, channels-last,
  the network's inference form of `models.fused`, background skipped): the
  largest probability difference (everywhere and inside the head) and the mask voxels that change.
* First view: the Inference dock predicts the patches covering the displayed slice first
  (`PatchGrid.order`); the seconds from the call, normalisation included, until all of them are
  fused is when the dock shows that slice complete.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_lesionseg.benchmarks.monai import timed
from napari_lesionseg.engine.patches import make_grid
from napari_lesionseg.engine.predict import Checkpoint, iter_predict, loaded_checkpoint, predict
from napari_lesionseg.engine.results import InferenceResult
from napari_lesionseg.engine.settings import InferenceSettings

__all__ = ["fast_path_accuracy", "run_with_first_view"]


def fast_path_accuracy(
    folder: str | Path, checkpoint: Checkpoint = "fbeta_1.5", *, device: str = "cpu", batch_size: int = 2
) -> dict[str, Any]:
    """The float32 path against the fast path on the subject in `folder`, with the paper's flips and spline fusion."""
    from napari_lesionseg.data.intensity import normalize_stack_with_foreground
    from napari_lesionseg.data.subject import load_subject

    model, metadata = loaded_checkpoint(checkpoint)
    subject = load_subject(folder)
    fast_settings = InferenceSettings(device=device, batch_size=batch_size, uncertainty=False, stream_partial=False)
    reference_settings = dataclasses.replace(fast_settings, precision="float32", skip_background=False, fused_network=False)
    fast_s, fast = timed(lambda: predict(subject, (model, metadata), fast_settings))
    reference_s, reference = timed(lambda: predict(subject, (model, metadata), reference_settings))
    _, head = normalize_stack_with_foreground(subject.stack(tuple(m for m in metadata.modalities if m in subject.images)))
    difference = np.abs(fast.probability - reference.probability)
    return {
        "checkpoint": metadata.name,
        "subject": subject.name,
        "shape": list(fast.probability.shape),
        "precision": fast.precision,
        "patches": fast.total,
        "patches_skipped": fast.skipped,
        "float32_s": reference_s,
        "fast_s": fast_s,
        "max_abs_difference": float(difference.max()),
        "max_abs_difference_in_head": float(difference[head].max()) if head.any() else 0.0,
        "mean_abs_difference": float(difference.mean()),
        "mask_voxels_float32": int(reference.mask.sum()),
        "mask_voxels_fast": int(fast.mask.sum()),
        "mask_voxels_changed": int((fast.mask != reference.mask).sum()),
    }


def run_with_first_view(
    images: dict[str, np.ndarray], checkpoint: Checkpoint, settings: InferenceSettings, axis: int = 0
) -> tuple[InferenceResult, dict[str, Any]]:
    """A whole run with the middle slice along `axis` first, and when that slice was fully fused."""
    shape = np.shape(next(iter(images.values())))
    displayed = shape[axis] // 2
    settings = dataclasses.replace(settings, priority_slice=displayed, priority_axis=axis)
    grid = make_grid(shape, settings.patch_size, settings.overlap, settings.border)  # type: ignore[arg-type]
    starts = grid.origins[:, axis]
    covering = int(((starts <= displayed) & (displayed < starts + grid.patch_size[axis])).sum())
    started = time.perf_counter()
    first_view_s = None
    events = iter_predict(images, checkpoint, settings)
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            result = stop.value
            break
        if first_view_s is None and event.done >= covering:
            first_view_s = time.perf_counter() - started
    view = {"axis": axis, "slice": displayed, "patches_covering": covering, "first_view_s": first_view_s}
    return result, view
