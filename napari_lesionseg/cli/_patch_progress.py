"""Progress of one subject's inference on stderr: a live line on a terminal, plain lines otherwise.

When stderr is not a terminal (a log file, a batch job) a line is printed every `LOG_EVERY_S`
seconds with the patches done, the rate and the time left. A run with very many patches (see
`engine.patches.LARGE_GRID_PATCHES`) also gets, after its first batch, a warning with the count and
the estimated time at the measured rate.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["LOG_EVERY_S", "PatchProgress", "format_duration"]

#: Seconds between progress lines when stderr is not a terminal.
LOG_EVERY_S = 30.0


class PatchProgress:
    """A `predict` callback printing the progress of subject `name`."""

    def __init__(self, name: str, *, quiet: bool, stream: TextIO | None = None) -> None:
        self.name, self.quiet = name, quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.perf_counter()
        self._logged = self._started
        self._estimated = False

    def __call__(self, event: Any) -> None:
        if event.message and not self.quiet:
            self._line(f"{self.name}: {event.message}")
        if self.quiet:
            return
        from napari_lesionseg.engine.patches import LARGE_GRID_PATCHES

        now = time.perf_counter()
        if not self._estimated and event.total > LARGE_GRID_PATCHES:
            self._estimated = True
            self._line(f"{self.name}: warning: {event.total:,} patches; {self._rate_text(event, now)}")
        if self.tty:
            print(f"\r{self.name}: {event.done}/{event.total} patches", end="", file=self.stream, flush=True)
        elif now - self._logged >= LOG_EVERY_S or event.done == event.total:
            self._logged = now
            self._line(f"{self.name}: {event.done}/{event.total} patches; {self._rate_text(event, now)}")

    def close(self) -> None:
        """End the live line."""
        if self.tty and not self.quiet:
            print("\r", end="", file=self.stream)

    def _rate_text(self, event: Any, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = event.done / elapsed
        left = (event.total - event.done) / rate if rate > 0 else float("inf")
        return f"{rate:.3g} patches/s, about {format_duration(left)} left"

    def _line(self, text: str) -> None:
        prefix = "\n" if self.tty else ""
        print(prefix + text, file=self.stream, flush=True)


def format_duration(seconds: float) -> str:
    """``3 h 20 min``, ``4 min 10 s`` or ``12 s``."""
    if seconds == float("inf"):
        return "an unknown time"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
