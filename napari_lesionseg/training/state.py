"""The training-state file that makes a run resumable: weights, optimizer, schedule, RNG, history.

It is written atomically every few steps and at the end, so a run killed at any moment resumes
from its last save. It is a working file, not a checkpoint: the network users load is written by
`checkpoints.save_checkpoint`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from napari_lesionseg._files import atomic_path
from napari_lesionseg.errors import CheckpointError

__all__ = ["STATE_FILE", "load_state", "restore_rng", "restored_process_state", "rng_state", "save_state"]

#: Name of the training-state file inside a run's work folder.
STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    """The torch random generators' states (CPU and, when present, every CUDA device)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back generator states saved by `rng_state` (CUDA ones only if CUDA is present)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """Put back the global torch generators and cuDNN's benchmark flag after the block.

    A training run seeds the process's generators and may turn cuDNN autotuning on; in the
    viewer's process that must not outlast the run.
    """
    generators, benchmark = rng_state(), torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        restore_rng(generators)
        torch.backends.cudnn.benchmark = benchmark


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `state` (tensors, dicts, numbers, strings) to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training state written by `save_state` (tensors and plain data only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(
            f"training state {path} cannot be read ({err}); delete it to start the run afresh"
        ) from err
