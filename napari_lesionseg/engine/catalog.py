"""How checkpoints are presented: one selector line each, a details paragraph, run names.

Headless (no napari): the Inference and Fine-tune docks show these strings, and the tests check them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_lesionseg.engine.checkpoints import CheckpointInfo
from napari_lesionseg.engine.choice import tuned_on

__all__ = ["auto_run_name", "checkpoint_details", "checkpoint_labels", "short_label", "training_summary", "validation_dsc"]


def auto_run_name(info: CheckpointInfo, infos: Sequence[CheckpointInfo]) -> str:
    """``"beta 1.5"``, or the checkpoint's name when its beta does not tell it apart from the others."""
    beta = info.metadata.beta
    if beta is None:
        return info.name
    same_beta = [other for other in infos if other.metadata.beta == beta]
    return f"beta {beta:g}" if len(same_beta) == 1 else f"{info.name}, beta {beta:g}"


def checkpoint_labels(infos: Sequence[CheckpointInfo]) -> dict[str, str]:
    """One selector line per checkpoint: its beta first (the one-click choice), then loss, name, source."""
    labels = {}
    for info in infos:
        beta = "no beta" if info.metadata.beta is None else f"β = {info.metadata.beta:g}"
        source = "yours" if info.source == "user" else "bundled"
        line = f"{beta}  ·  {info.metadata.loss}  ·  {info.name} ({source})"
        if info.metadata.parent:  # listed under its parent (`choice.grouped`)
            subject = tuned_on(info)
            line = f"   ↳ {line}, from {info.metadata.parent}" + (f", tuned on {subject}" if subject else "")
        labels[str(info.path)] = line
    return labels


def checkpoint_details(info: CheckpointInfo) -> str:
    """The selected checkpoint's training data, validation score and inputs, in one short paragraph."""
    metadata = info.metadata
    parts = [f"Loss {metadata.loss}" + ("" if metadata.beta is None else f" (β = {metadata.beta:g})")]
    parts.append(f"trained on {training_summary(metadata.training)}")
    dsc = validation_dsc(metadata.validation)
    if dsc is not None and metadata.parent:  # a fine-tune validates on the mask it learnt: say so
        parts.append(f"DSC {dsc:.3f} on the mask it was tuned on (not held out)")
    elif dsc is not None:
        parts.append(f"validation DSC {dsc:.3f}")
    if metadata.parent:
        parts.append(f"fine-tuned from {metadata.parent}")
    parts.append(f"inputs {', '.join(metadata.modalities)}; patch {'×'.join(map(str, metadata.patch_size))}")
    return "; ".join(parts) + "."


def validation_dsc(validation: dict[str, Any]) -> float | None:
    """The validation DSC, stored flat (``{"dsc": ...}``) or as the mean over subjects (``{"mean": {"dsc": ...}}``)."""
    for scores in (validation, validation.get("mean")):
        if isinstance(scores, dict) and isinstance(scores.get("dsc"), (int, float)):
            return float(scores["dsc"])
    return None


def training_summary(training: dict[str, Any]) -> str:
    data = training.get("data") or training.get("subjects") or []
    if isinstance(data, (list, tuple)) and data:
        names = [Path(str(item)).name for item in data]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        summary = f"{len(names)} folder(s) ({shown})"
    else:
        summary = "unrecorded data"
    steps = training.get("steps") or training.get("epochs")
    if steps:
        summary += f", {steps} {'steps' if 'steps' in training else 'epochs'}"
    return summary


def short_label(info: CheckpointInfo) -> str:
    """``"name (bundled, from parent)"``: a compact line for lists of starting points."""
    parent = f", from {info.metadata.parent}" if info.metadata.parent else ""
    return f"{info.name} ({info.source}{parent})"
