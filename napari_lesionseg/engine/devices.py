"""Where the network runs: device resolution and the choices the docks and the CLI offer.

Device ``"auto"``: CUDA, then MPS, then CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import DEVICES

__all__ = ["cpu_threads", "device_options", "mps_available", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for `device`: ``"auto"`` picks CUDA, then MPS, then the CPU."""
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError as err:
        raise InvalidInputError(f"unknown device {name!r}; expected one of {DEVICES} (or cuda:N)") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} was asked for but CUDA is not available here; use cpu or auto")
    if resolved.type == "mps" and not mps_available():
        raise InvalidInputError(f"device {name!r} was asked for but MPS is not available here; use cpu or auto")
    return resolved


def device_options() -> list[tuple[str, str]]:
    """``(label, device)`` pairs for the devices present here, naming the GPU when there is one."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    mps = mps_available()
    choices = [(f"auto ({gpu or ('Apple GPU' if mps else 'CPU')})", "auto"), ("CPU", "cpu")]
    if gpu:
        choices.append((f"GPU: {gpu}", "cuda"))
    if mps:
        choices.append(("GPU: Apple MPS", "mps"))
    return choices


def mps_available() -> bool:
    """Whether Apple's Metal backend can run here."""
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@contextlib.contextmanager
def cpu_threads(threads: int | None, device: torch.device) -> Iterator[int]:
    """Run the block with `threads` CPU threads (None: one if the machine is already busy), then restore.

    On a CPU whose 1-minute load average is at least its core count, OpenMP threads wait on each other
    while the others run: measured on this project's 2-core machine at load 5-7, two threads took 2.4
    times longer per fine-tune step than one and used 4 times the CPU time.
    """
    before = torch.get_num_threads()
    if threads is None:
        busy = device.type == "cpu" and hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1)
        threads = 1 if busy else before
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
