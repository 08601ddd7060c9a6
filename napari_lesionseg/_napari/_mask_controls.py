"""How a run's probability becomes its mask in the Inference dock: the threshold and the minimum lesion size.

Both apply once the widget rests (a slider drag sends a change per step), to the current run only;
the mask is the one `lesionseg predict --min-lesion-mm3` writes for the same settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from magicgui.widgets import Container, FloatSlider, FloatSpinBox
from qtpy.QtCore import QTimer

from napari_lesionseg.constants import MIN_LESION_MM3, THRESHOLD
from napari_lesionseg.evaluation.lesion_size import drop_small_lesions

__all__ = ["MaskControls"]

#: How long the widgets must rest before the mask is recomputed (ms).
DEBOUNCE_MS = 150


class MaskControls(Container):
    """Threshold slider and minimum lesion size (mm^3); calls `on_change` once they rest."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__(labels=True)
        self.threshold = FloatSlider(label="Threshold", min=0.0, max=1.0, step=0.01, value=THRESHOLD)
        self.min_lesion = FloatSpinBox(
            label="Min lesion (mm\u00b3)", value=MIN_LESION_MM3, min=0.0, max=10_000.0, step=1.0,
            tooltip="Lesions smaller than this are left out of the mask (MSSEG: 3 mm\u00b3); 0 keeps every one.",
        )  # fmt: skip
        self._on_change = on_change
        self._timer = QTimer(singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(on_change)
        for widget in (self.threshold, self.min_lesion):
            widget.changed.connect(lambda _value: self._timer.start())  # not start(msec): the value is no interval
        self.extend([self.threshold, self.min_lesion])

    def apply_now(self) -> None:
        """Recompute at once, not after the rest."""
        self._timer.stop()
        self._on_change()

    def mask(self, probability: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        """The mask of `probability` (voxels of `spacing` mm) with the current settings."""
        mask = np.asarray(probability) >= float(self.threshold.value)
        minimum = float(self.min_lesion.value)
        return drop_small_lesions(mask, spacing, minimum) if minimum > 0 else mask
