"""Checks of a checkpoint's weights against the network its metadata describes, and of their values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from napari_lesionseg.errors import CheckpointError, LesionSegError
from napari_lesionseg.models import build_model, size_divisor

__all__ = ["check_finite", "check_state_fits", "non_finite_problem", "patch_problems"]


def check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise `CheckpointError` when a weight tensor holds NaN or infinite values."""
    problem = non_finite_problem(state, path)
    if problem is not None:
        raise CheckpointError(problem)


def non_finite_problem(state: Mapping[str, torch.Tensor], path: Path) -> str | None:
    """What `check_finite` would say about `state`, or None when every weight is finite."""
    bad = [key for key, value in state.items() if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if not bad:
        return None
    return (
        f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values ({', '.join(bad[:3])}"
        f"{', ...' if len(bad) > 3 else ''}); the training diverged or the file is damaged, and its predictions "
        "would be meaningless"
    )


def check_state_fits(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], source: str) -> None:
    """Raise `CheckpointError` unless `state` has exactly the names and shapes of the network `config` builds."""
    try:
        with torch.device("meta"):
            expected = {key: tuple(value.shape) for key, value in build_model(config).state_dict().items()}
    except LesionSegError as err:
        raise CheckpointError(f"{source}: the network config {dict(config)} cannot be built: {err}") from err
    found = {key: tuple(value.shape) for key, value in state.items()}
    if found == expected:
        return
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    resized = sorted(key for key in set(found) & set(expected) if found[key] != expected[key])
    groups = {"missing weights": missing, "unexpected weights": unexpected, "wrong shapes": resized}
    details = [
        f"{label} {items[:3]}{' ...' if len(items) > 3 else ''} ({len(items)})" for label, items in groups.items() if items
    ]
    raise CheckpointError(
        f"{source}: the weights do not fit the {config.get('architecture')} network its metadata describes: "
        f"{'; '.join(details)}"
    )


def patch_problems(model: Mapping[str, Any], patch_size: Sequence[int]) -> list[str]:
    try:
        divisor = size_divisor(model)
    except LesionSegError as err:
        return [str(err)]
    if len(patch_size) != 3 or any(int(size) < 1 or int(size) % divisor for size in patch_size):
        return [f"patch size {list(patch_size)} is not three positive multiples of {divisor}"]
    return []
