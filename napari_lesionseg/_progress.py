"""Long work as generators: the one cancel token, and running a progress generator to the end with a callback.

Inference (`engine.predict.iter_predict`) and training (`training.loop.iter_training`) yield progress
after every batch or step and check a `CancelToken` before the next one; the CLI drains them with a
callback, the docks run them in napari generator workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

Event = TypeVar("Event")
Result = TypeVar("Result")

__all__ = ["CancelToken", "drain"]


class CancelToken:
    """A thread-safe flag that asks a running inference or training to stop before its next batch or step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop."""
        self._event.set()

    def is_set(self) -> bool:
        """Whether cancellation was asked."""
        return self._event.is_set()


def drain(steps: Generator[Event, Any, Result], callback: Callable[[Event], Any] | None = None) -> Result:
    """Exhaust `steps`, passing every yielded event to `callback`, and return the generator's value."""
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
