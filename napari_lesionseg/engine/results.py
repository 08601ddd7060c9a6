"""What an inference run reports: a progress event after every batch, and the fused result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from napari_lesionseg.engine.patches import PatchGrid

if TYPE_CHECKING:
    from napari_lesionseg.engine.model_space import ModelSpace

__all__ = ["InferenceResult", "ProgressEvent"]


@dataclass(frozen=True)
class ProgressEvent:
    """Progress after one batch.

    Attributes:
        done: patches predicted and fused so far.
        total: patches in the grid.
        box: ``(2, 3)`` start/stop of the region this batch changed (its patches' bounding box,
            clipped to the volume).
        patch_boxes: ``(k, 2, 3)`` boxes of the batch's patches.
        partial: the primary mode's fused probability inside `box` (a copy, so it stays valid
            while the run goes on), or None when the settings turn streaming off. Paste it at
            `box` to keep a live view without copying the whole volume every batch.
        message: a notice from this batch (e.g. an out-of-memory fallback), else None.
    """

    done: int
    total: int
    box: np.ndarray
    patch_boxes: np.ndarray
    partial: np.ndarray | None = None
    message: str | None = None

    @property
    def fraction(self) -> float:
        """Share of the patches done, in [0, 1]."""
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """Fused outputs of a run, ``(Z, Y, X)`` on the input's (native) grid.

    Attributes:
        probabilities: fused float32 probability per fusion mode (native grid).
        weight_sums: per-voxel sum of the fusion weights per mode (for heatmaps), on the grid the
            network ran on: ``model_space.geometry``.
        uncertainty: weighted standard deviation of all predictions covering each voxel, around
            the primary probability (None when turned off; native grid).
        mask: primary probability >= threshold (native grid).
        grid: the patch grid, in model space (its boxes are the patches the viewer can show).
        primary: the primary fusion mode.
        threshold: the mask threshold.
        done: patches predicted; ``total``: patches in the grid.
        timings: seconds per stage (``extract``, ``network``, ``fusion``, ``total``).
        device: where the network ran.
        messages: notices from the run (fallbacks, what was resampled).
        model_space: where the network ran and whether the inputs were resampled for it; None when
            the images came without a geometry (the run then used their grid as it was).
        precision: the dtype the network ran in (``"float32"``, ``"bfloat16"``, ``"float16"``).
        skipped: patches not sent to the network because they hold no foreground (probability 0);
            they count in `done`.
    """

    probabilities: dict[str, np.ndarray]
    weight_sums: dict[str, np.ndarray]
    uncertainty: np.ndarray | None
    mask: np.ndarray
    grid: PatchGrid
    primary: str
    threshold: float
    done: int
    total: int
    timings: dict[str, float]
    device: str
    messages: tuple[str, ...] = field(default=())
    model_space: ModelSpace | None = None
    precision: str = "float32"
    skipped: int = 0

    @property
    def probability(self) -> np.ndarray:
        """The primary mode's fused probability."""
        return self.probabilities[self.primary]

    @property
    def completed(self) -> bool:
        """False when the run was cancelled before the last patch."""
        return self.done == self.total
