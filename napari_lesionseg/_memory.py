"""How much memory a step may allocate: checked before large arrays are made, so a bad header or
setting gives a clear error instead of a bare `MemoryError` (or the kernel's out-of-memory killer).

The budget is the memory the system reports available, lowered by an address-space limit
(``ulimit -v``) when one is set, or ``$LESIONSEG_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix).
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import resource
except ImportError:  # pragma: no cover (Windows)
    resource = None  # type: ignore[assignment]

__all__ = ["format_bytes", "memory_budget"]

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_budget() -> int:
    """Bytes a step may allocate now."""
    override = os.environ.get("LESIONSEG_MEMORY_LIMIT", "").strip().upper().removesuffix("B")
    if override:
        unit = override[-1] if override[-1] in _UNITS else ""
        return int(float(override[: len(override) - len(unit)]) * _UNITS[unit])
    budget = _available_memory()
    soft, _ = resource.getrlimit(resource.RLIMIT_AS) if resource is not None else (-1, -1)
    if resource is not None and soft != resource.RLIM_INFINITY:
        budget = min(budget, max(0, soft - _address_space_used()))
    return budget


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _available_memory() -> int:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover (macOS/Windows without these)
        return 2**62


def _address_space_used() -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0
