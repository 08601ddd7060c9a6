"""The headless demo's last step: a real-looking acquisition (a sample subject with 4 mm axial slices, as
2-D clinical FLAIRs have) segmented in the model's space."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import numpy as np

from napari_lesionseg._napari._session import session_for
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.data.volumes import save_volume
from napari_lesionseg.evaluation.metrics import compute_metrics

__all__ = ["thick_slice_case", "write_thick_slice_copy"]

#: Slices of the real-looking case: 2 sample slices averaged into one (4 mm from the 2 mm sample).
SLICE_FACTOR = 2


def write_thick_slice_copy(subject: Path, out: Path) -> Path:
    """`subject` with every volume block-averaged over `SLICE_FACTOR` axial slices (the mask: any lesion)."""
    loaded = load_subject(subject)
    out.mkdir(parents=True, exist_ok=True)
    volumes = {**loaded.images, **({"label-lesion_mask": loaded.mask} if loaded.mask is not None else {})}
    for role, volume in volumes.items():
        data, geometry = _thick(volume.data, volume.geometry, mask=role.startswith("label"))
        save_volume(data, geometry, out / f"{loaded.name}-thick_{role}.nii.gz")
    return out


def thick_slice_case(
    viewer: napari.Viewer, docks: dict[str, Any], folder: Path, checkpoint: str, wait: Callable[..., None]
) -> dict[str, Any]:
    """Open the thick-slice subject in place of the first one and segment it with the default model."""
    viewer.layers.clear()
    inference = docks["Inference"]
    inference.open_folder(folder)
    wait(lambda: "FLAIR" in viewer.layers and "reference mask" in viewer.layers, "the thick-slice subject to open")
    inference.refresh_checkpoints()
    inference.select_checkpoint(checkpoint)  # the bundled model, not the one the re-run tuned on another subject
    inference.set_options(tta=False, run_name="thick slices", keep_runs=False)
    started = time.perf_counter()
    inference.run()
    wait(lambda: not inference.busy, "the thick-slice run", timeout=900)
    run = session_for(viewer).latest
    note = run.result.model_space.describe() if run is not None and run.result.model_space is not None else None
    spacing = tuple(float(s) for s in viewer.layers["FLAIR"].scale)
    return {"spacing_mm": spacing, "wall_s": round(time.perf_counter() - started, 1), "model_space": note, **_scores(viewer)}


def _scores(viewer: napari.Viewer) -> dict[str, Any]:
    run = session_for(viewer).latest
    if run is None or "reference mask" not in viewer.layers:
        return {}
    reference = np.asarray(viewer.layers["reference mask"].data) != 0
    metrics = compute_metrics(run.result.mask, reference, spacing=tuple(viewer.layers["reference mask"].scale))
    return {"checkpoint": run.checkpoint.name, **{k: metrics[k] for k in ("dsc", "sensitivity", "ppv", "ltpr", "lfpr")}}


def _thick(data: np.ndarray, geometry: Geometry, *, mask: bool) -> tuple[np.ndarray, Geometry]:
    """Block-average (or, for a mask, block-max) axis 0 (S) by `SLICE_FACTOR`, with the affine to match."""
    depth = data.shape[0] // SLICE_FACTOR * SLICE_FACTOR
    blocks = data[:depth].reshape(depth // SLICE_FACTOR, SLICE_FACTOR, *data.shape[1:])
    thick = blocks.max(axis=1) if mask else blocks.mean(axis=1, dtype=np.float32)
    scale = np.diag([SLICE_FACTOR, 1.0, 1.0, 1.0])
    scale[0, 3] = (SLICE_FACTOR - 1) / 2.0  # the new voxel's centre is the middle of its block
    return thick, Geometry.from_affine(geometry.canonical_affine @ scale, thick.shape)
