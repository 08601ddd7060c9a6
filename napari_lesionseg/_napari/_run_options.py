"""The Inference dock's run options: fusion, overlap, test-time augmentation, brain only, device, batch, run name."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox

from napari_lesionseg.constants import OVERLAP
from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.devices import device_options
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.evaluation.compare import COMPARED_MODES
from napari_lesionseg.vocabulary import FUSION_MODES

__all__ = ["RunOptions"]

#: `set_options` keyword -> widget attribute.
_NAMES = {"batch_size": "batch", "keep_runs": "keep"}


class RunOptions(Container):
    """How the next run cuts, predicts and fuses; `settings()` turns it into `InferenceSettings`."""

    def __init__(self) -> None:
        super().__init__(labels=False)
        self.fusion = ComboBox(label="Fusion", choices=list(FUSION_MODES), value="spline")
        self.overlap = FloatSpinBox(label="Overlap", min=0.0, max=0.9, step=0.05, value=OVERLAP)
        self.tta = CheckBox(text="Test-time augmentation (4 flips)", value=True)
        self.device = ComboBox(label="Device", choices=device_options())
        self.batch = SpinBox(label="Patches per batch", min=1, max=64, value=2)
        self.run_name = LineEdit(label="Run name")
        self.keep = CheckBox(text="Keep earlier runs (compare betas side by side)", value=False)
        self.brain_only = CheckBox(text="Lesions inside the brain only (none in scalp, fat or glands)", value=True)
        self.run_name.native.setPlaceholderText("automatic, e.g. beta 1.5")
        labelled = Container(labels=True, widgets=[self.fusion, self.overlap, self.device, self.batch, self.run_name])
        self.extend([labelled, self.tta, self.brain_only, self.keep])

    def configure(self, **values: Any) -> None:
        """Set options by name as a user would (None leaves one as it is); see `InferenceWidget.set_options`."""
        for name, value in values.items():
            if value is not None:
                getattr(self, _NAMES.get(name, name)).value = value

    def settings(self, metadata: CheckpointMetadata, *, threshold: float, priority_slice: int) -> InferenceSettings:
        """The run's settings: every compared fusion mode fused in one run, the chosen one first."""
        primary = self.fusion.value
        return InferenceSettings(
            patch_size=tuple(int(p) for p in metadata.patch_size),
            overlap=float(self.overlap.value),
            fusion=(primary, *(mode for mode in COMPARED_MODES if mode != primary)),
            tta="paper" if self.tta.value else "none",
            brain_only=bool(self.brain_only.value),
            batch_size=int(self.batch.value),
            device=self.device.value,
            threshold=threshold,
            priority_slice=priority_slice,
        )
