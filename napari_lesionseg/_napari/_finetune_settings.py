"""The Fine-tune dock's training settings: loss (and beta), iterations, learning rate, batch, device."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox

from napari_lesionseg.engine.devices import device_options
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training.correction_settings import FINE_TUNE_DEFAULTS
from napari_lesionseg.vocabulary import LOSS_LABELS

__all__ = ["FineTuneSettings", "learning_rate"]


class FineTuneSettings(Container):
    """The settings a fine-tune takes, as labelled widgets; `values()` gives them checked."""

    def __init__(self) -> None:
        super().__init__(labels=True)
        self.loss = ComboBox(label="Loss", choices=[(label, name) for name, label in LOSS_LABELS.items()], value="fbeta")
        self.beta = FloatSpinBox(label="Beta (F-beta)", value=1.5, min=0.1, max=10.0, step=0.1)
        self.iterations = SpinBox(label="Iterations", value=FINE_TUNE_DEFAULTS.steps, min=1, max=100_000)
        self.lr = LineEdit(label="Learning rate", value=f"{FINE_TUNE_DEFAULTS.lr:g}")
        self.batch = SpinBox(label="Batch size", value=FINE_TUNE_DEFAULTS.batch_size, min=1, max=64)
        self.device = ComboBox(label="Device", choices=device_options(), value="auto")
        self.measure = CheckBox(
            text="Measure before / after on the corrected mask (quick: no overlap, no TTA)", value=True
        )
        self.extend([self.loss, self.beta, self.iterations, self.lr, self.batch, self.device])
        self.loss.changed.connect(lambda loss: setattr(self.beta, "enabled", loss == "fbeta"))

    def configure(self, *, lr: float | None = None, **values: Any) -> None:
        """Set settings by name as the user would (None leaves one as it is)."""
        for name, value in values.items():
            if value is not None:
                getattr(self, {"batch_size": "batch"}.get(name, name)).value = value
        if lr is not None:
            self.lr.value = f"{lr:g}"

    def values(self) -> dict[str, Any]:
        """`FineTuneRequest` keyword arguments (raises `InvalidInputError` on a bad learning rate)."""
        return {
            "loss": self.loss.value,
            "beta": float(self.beta.value) if self.loss.value == "fbeta" else None,
            "steps": int(self.iterations.value),
            "lr": learning_rate(self.lr.value),
            "batch_size": int(self.batch.value),
            "device": self.device.value,
            "measure": bool(self.measure.value),
        }


def learning_rate(text: str) -> float:
    """The learning rate typed in `text`, in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise InvalidInputError(f"Learning rate {text!r}: expected a number between 0 and 1, such as 1e-4.")
    return value
