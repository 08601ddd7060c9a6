"""What the Inference dock runs off the GUI thread, and the checks it makes before: the worker body,
pausing a worker mid-run (for screenshots), checking the chosen layers."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Layer
from napari.utils.notifications import show_warning
from qtpy.QtCore import Qt

from napari_lesionseg._progress import CancelToken
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.engine.predict import iter_predict
from napari_lesionseg.engine.results import InferenceResult, ProgressEvent
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import InvalidInputError

__all__ = ["InferenceFailed", "box_slices", "check_layers", "inference_job", "pause_worker_after", "warnings_as_notifications"]

#: Longest the network waits for the run's layers to be added before it starts anyway (seconds).
LAYERS_WAIT_S = 5.0


class InferenceFailed(Exception):
    """A runtime failure inside the network run (e.g. a device error), reported to the user."""


def inference_job(
    images: dict[str, np.ndarray],
    checkpoint: Path,
    settings: InferenceSettings,
    cancel: CancelToken,
    layers_ready: threading.Event,
    geometry: Geometry | None = None,
    acquired: dict[str, Geometry] | None = None,
) -> Generator[ProgressEvent, None, InferenceResult]:
    """Worker body: the one prediction entry point, yielding every event.

    The network starts once `layers_ready` is set, after `LAYERS_WAIT_S` at the latest (or the run
    is cancelled: the engine then stops before its first batch). With the reference layer's
    `geometry` the run goes through the model's space (events and result stay on the layers' grid);
    `acquired` holds the grids the resampled layers were read on (`engine.coverage`).
    """

    def wait_for_layers() -> None:
        deadline = time.monotonic() + LAYERS_WAIT_S  # the layers only show the run: never wait on them for long
        while not layers_ready.wait(0.05) and not cancel.is_set() and time.monotonic() < deadline:
            pass

    try:
        run = iter_predict(images, checkpoint, settings, cancel=cancel, before_network=wait_for_layers, geometry=geometry,
                           acquired=acquired)  # fmt: skip
        return (yield from run)
    except RuntimeError as err:  # superqt drops a worker's RuntimeError silently: make it reach the user
        raise InferenceFailed(f"inference failed on device {settings.device!r}: {err}") from err


def pause_worker_after(worker: Any, batches: int) -> None:
    """Pause `worker` right after its `batches`-th event, before it starts the next batch.

    The slot runs in the worker's thread (direct connection): a request sent from the GUI thread
    could arrive after a fast run has already finished.
    """
    count = itertools.count(1)

    def pause_when_due(event: ProgressEvent) -> None:
        if next(count) == batches:
            worker.pause()

    worker.yielded.connect(pause_when_due, Qt.ConnectionType.DirectConnection)


def check_layers(chosen: dict[str, Layer]) -> None:
    """Raise `InvalidInputError` unless the chosen layers are distinct 3-D volumes of one shape."""
    for modality, layer in chosen.items():
        if layer.ndim != 3 or getattr(layer, "rgb", False) or layer.multiscale:
            raise InvalidInputError(
                f"Layer {layer.name!r} (for {modality}) has shape {tuple(layer.data.shape)}: inference needs a "
                "single-channel 3-D volume (Z, Y, X)."
            )
    seen: dict[int, str] = {}
    for modality, layer in chosen.items():
        if id(layer) in seen:
            raise InvalidInputError(
                f"Layer {layer.name!r} is chosen for both {seen[id(layer)]} and {modality}: pick one layer per "
                "modality."
            )
        seen[id(layer)] = modality
    (first_modality, first), *others = chosen.items()
    for modality, layer in others:
        if layer.data.shape != first.data.shape:
            raise InvalidInputError(
                f"Layer {layer.name!r} ({modality}) has shape {tuple(layer.data.shape)} but {first.name!r} "
                f"({first_modality}) has {tuple(first.data.shape)}: all input layers must lie on one voxel grid. "
                "Open the subject folder instead (modalities on other grids are resampled onto the FLAIR grid) or "
                "pick another layer."
            )


def box_slices(box: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(int(start), int(stop)) for start, stop in zip(box[0], box[1]))


@contextlib.contextmanager
def warnings_as_notifications() -> Iterator[None]:
    """Warnings raised inside (e.g. an unreadable checkpoint skipped) become napari notifications."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        show_warning(str(warning.message))
