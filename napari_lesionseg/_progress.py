"""Long work as generators: the one cancel token, and running a progress generator to the end with a callback.

Inference (`engine.predict.iter_predict`) and training (`training.loop.iter_training`) yield progress
after every batch or step and check a `CancelToken` before the next one; the CLI drains them with a
callback, the docks run them in napari generator workers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

Event = TypeVar("Event")
Result = TypeVar("Result")

__all__ = ["REDRAW_INTERVAL_S", "CancelToken", "RedrawThrottle", "drain"]

#: Shortest time between two redraws of a live result (seconds), for a network on the CPU and on an
#: accelerator. On the CPU the repaints take cores from the network: with software OpenGL on two cores
#: one repaint of the window costs about 0.1 s, and redrawing after every batch made a run 1.4 times
#: slower than the engine alone (1.2 times at one redraw per second).
REDRAW_INTERVAL_S = {"cpu": 1.0, "accelerator": 0.25}


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


class RedrawThrottle:
    """When to redraw a live view: at most once per `interval_s`; updates in between are drawn together."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.interval_s = float(interval_s)
        self._clock = clock
        self._pending = False
        self._last = -math.inf

    def request(self) -> float | None:
        """Seconds to wait before the next redraw, or None when one is already scheduled."""
        if self._pending:
            return None
        self._pending = True
        return max(0.0, self._last + self.interval_s - self._clock())

    def drawn(self) -> None:
        """Record that the scheduled redraw has happened."""
        self._pending = False
        self._last = self._clock()

    @classmethod
    def for_device(cls, device_type: str) -> RedrawThrottle:
        """The throttle for a network running on a device of this type (``"cpu"``, ``"cuda"``...)."""
        return cls(REDRAW_INTERVAL_S["cpu" if device_type == "cpu" else "accelerator"])
