"""Running the engine's progress generators (inference, training) to the end with a callback."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

Event = TypeVar("Event")
Result = TypeVar("Result")


def drain(steps: Generator[Event, Any, Result], callback: Callable[[Event], Any] | None = None) -> Result:
    """Exhaust `steps`, passing every yielded event to `callback`, and return the generator's value."""
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
