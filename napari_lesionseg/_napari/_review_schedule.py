"""When the Lesion review dock reviews: once the chosen pair rests after an edit of either of its layers (only
theirs) or another change (`schedule`), and off the GUI thread one review at a time (asked again meanwhile, it
reviews once more when that one ends, showing the overlay if any of the requests meanwhile was the user's)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.layers import Labels
from napari.qt.threading import create_worker
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from napari_lesionseg.evaluation.review import Review, review_masks

__all__ = ["ReviewSchedule"]


class ReviewSchedule:
    """Reviews of the layers `pair()` returns; `update(quiet=...)` is called when one is due: quiet when the pair
    rested, as asked when a review was asked for while another ran (unless `closed` is set by then)."""

    def __init__(
        self,
        parent: QWidget,
        pair: Callable[[], tuple[Labels | None, Labels | None]],
        update: Callable[..., Any],
        *,
        rest_ms: int,
        closed: threading.Event,
    ) -> None:
        self._pair, self._update, self._closed = pair, update, closed
        self._watched: list[Labels] = []
        self._worker: Any = None
        self._rerun = False
        self._rerun_quiet = True
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(rest_ms)
        self._timer.timeout.connect(lambda: update(quiet=True))

    @property
    def busy(self) -> bool:
        """Whether a review is being computed."""
        return self._worker is not None

    def follow(self, value: Any = None) -> None:
        """Follow the edits of the chosen pair (only theirs) and review it."""
        for layer in self._watched:
            layer.events.paint.disconnect(self.schedule)
            layer.events.data.disconnect(self.schedule)
        self._watched = [layer for layer in self._pair() if layer is not None]
        for layer in self._watched:
            layer.events.paint.connect(self.schedule)
            layer.events.data.connect(self.schedule)
        self.schedule()

    def schedule(self, event: Any = None) -> None:
        """Review the pair once it rests, if both layers are chosen."""
        if all(layer is not None for layer in self._pair()):
            self._timer.start()

    def stop(self) -> None:
        """Drop the review scheduled (one is being made now)."""
        self._timer.stop()

    def start(
        self,
        arguments: dict[str, Any],
        returned: Callable[[Review], Any],
        errored: Callable[[Exception], Any],
        *,
        quiet: bool = False,
    ) -> Any:
        """Compute `review_masks(**arguments)` off the GUI thread; returns the worker (while one runs: that one,
        and `update` is called once it ends, loud if this or another request meanwhile was not `quiet`)."""
        if self._worker is not None:
            self._rerun = True
            self._rerun_quiet = self._rerun_quiet and quiet
            return self._worker
        connections = {"returned": returned, "errored": errored, "finished": self._finished}
        self._worker = create_worker(review_masks, **arguments, _connect=connections)
        return self._worker

    def _finished(self) -> None:
        self._worker = None
        if self._rerun and not self._closed.is_set():
            quiet, self._rerun, self._rerun_quiet = self._rerun_quiet, False, True
            self._update(quiet=quiet)
