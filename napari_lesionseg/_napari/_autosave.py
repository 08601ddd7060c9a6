"""Crash-safe autosave of a corrected-mask labels layer: every edit is on disk about a second later.

The saver listens to the layer's edit events (painting, filling, erasing, accept/reject, undo and
redo, data replaced), waits until the edits pause (`delay_ms`), and writes the mask with
`corrections.save_corrected_mask` (a new file renamed over the old one, never over the reference;
the first write of a session that did not restore the autosave keeps the earlier one as the
previous generation) in a thread so that a large mask does not freeze the viewer. Watching a target
first removes the temporary files a killed write left beside it. A checksum skips writes when nothing changed (napari also emits
``set_data`` on every slice change). `flush` writes at once, for when the dock or napari closes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Labels
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer

from napari_lesionseg._files import clean_stale_temps
from napari_lesionseg.data.corrections import previous_path, save_corrected_mask
from napari_lesionseg.data.geometry import Geometry

__all__ = ["AutosaveTarget", "MaskAutosaver"]

_EDIT_EVENTS = ("paint", "data", "set_data")


@dataclass(frozen=True)
class AutosaveTarget:
    """Where and on which grid a corrected mask is autosaved.

    Attributes:
        path: the ``*_label-lesion_corrected.nii.gz`` file.
        geometry: the subject's grid.
        fallback: ``(subject folder, subject name)`` for the per-user folder if `path` cannot be written.
        protected: files never to overwrite (the reference mask).
        restored_from: the file the layer was loaded from, if it was restored from this autosave.
    """

    path: Path
    geometry: Geometry
    fallback: tuple[Path, str] | None = None
    protected: Sequence[Path] = field(default_factory=tuple)
    restored_from: Path | None = None


class MaskAutosaver:
    """Debounced, threaded autosave of one labels layer at a time.

    Args:
        delay_ms: quiet time after the last edit before writing.
        on_saved: called on the GUI thread with the path written.
        on_error: called on the GUI thread with the exception of a failed write.
        parent: owner of the debounce timer (the dock), so that it lives as long as the dock.
    """

    def __init__(
        self,
        *,
        delay_ms: int = 1000,
        on_saved: Callable[[Path], Any] | None = None,
        on_error: Callable[[Exception], Any] | None = None,
        parent: QObject | None = None,
    ) -> None:
        self.layer: Labels | None = None
        self.target: AutosaveTarget | None = None
        self.last_saved: Path | None = None
        self._on_saved, self._on_error = on_saved, on_error
        self._checksum: int | None = None
        self._kept_previous = False
        self._writing = False
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._save_in_background)

    def watch(self, layer: Labels | None, target: AutosaveTarget | None) -> None:
        """Autosave `layer` to `target` from now on (None stops); pending edits of the previous layer are written first."""
        self.flush()
        self._disconnect()
        self.layer, self.target = layer, target
        self._kept_previous = target is not None and target.restored_from == target.path
        self._checksum = _checksum(_snapshot(layer)) if layer is not None else None
        if target is not None:
            for path in (target.path, previous_path(target.path)):
                clean_stale_temps(path)
        if layer is not None:
            for name in _EDIT_EVENTS:
                getattr(layer.events, name).connect(self._on_edit)

    @property
    def pending(self) -> bool:
        """Whether edits wait for the timer."""
        return self._timer.isActive()

    @property
    def busy(self) -> bool:
        """Whether a write is pending or running."""
        return self.pending or self._writing

    def flush(self) -> Path | None:
        """Write the layer now (on this thread) if it changed since the last write; return the path written."""
        self._timer.stop()
        job = self._job()
        if job is None:
            return None
        try:
            path = _write(*job)
        except Exception as err:  # noqa: BLE001 (an autosave must report, never raise into Qt's close path)
            self._report_error(err)
            return None
        self._saved(path)
        return path

    # --- internals ------------------------------------------------------------------------------

    def _on_edit(self, event: Any = None) -> None:
        self._timer.start()

    def _save_in_background(self) -> None:
        if self._writing:  # one write at a time, so an older snapshot never lands after a newer one
            self._timer.start()
            return
        job = self._job()
        if job is None:
            return
        self._writing = True
        create_worker(
            _write, *job, _connect={"returned": self._saved, "errored": self._report_error, "finished": self._done}
        )

    def _job(self) -> tuple[np.ndarray, AutosaveTarget, bool] | None:
        """The snapshot to write and its target, or None when nothing changed since the last write."""
        if self.layer is None or self.target is None:
            return None
        snapshot = _snapshot(self.layer)
        checksum = _checksum(snapshot)
        if checksum == self._checksum:
            return None
        self._checksum = checksum
        first = not self._kept_previous
        self._kept_previous = True
        return snapshot, self.target, first

    def _saved(self, path: Path) -> None:
        self.last_saved = path
        if self._on_saved is not None:
            self._on_saved(path)

    def _report_error(self, err: Exception) -> None:
        self._checksum = None  # try again after the next edit
        if self._on_error is not None:
            self._on_error(err)

    def _done(self) -> None:
        self._writing = False

    def _disconnect(self) -> None:
        if self.layer is None:
            return
        for name in _EDIT_EVENTS:
            getattr(self.layer.events, name).disconnect(self._on_edit)


def _write(snapshot: np.ndarray, target: AutosaveTarget, keep_earlier: bool) -> Path:
    return save_corrected_mask(
        snapshot,
        target.geometry,
        target.path,
        protected=target.protected,
        fallback=target.fallback,
        keep_earlier=keep_earlier,
    )


def _snapshot(layer: Labels) -> np.ndarray:
    return (np.asarray(layer.data) != 0).view(np.uint8)


def _checksum(snapshot: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(snapshot).data)
