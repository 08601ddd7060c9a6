"""How checkpoints are presented: one selector line each, a details paragraph, run names.

Headless (no napari): the Inference and Fine-tune docks show these strings, and the tests check them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_lesionseg.engine.checkpoints import CheckpointInfo, CheckpointMetadata
from napari_lesionseg.engine.choice import bundled_rank, tuned_on
from napari_lesionseg.engine.requirements import (
    missing_modalities,
    required_modalities,
    trained_spacing,
    used_modalities,
)
from napari_lesionseg.errors import CheckpointError

__all__ = [
    "auto_run_name",
    "checkpoint_details",
    "checkpoint_labels",
    "inputs_summary",
    "pick_by_beta",
    "runnable_first",
    "short_label",
    "training_summary",
    "validation_dsc",
]


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
    parts.append(f"inputs {inputs_summary(metadata)}; patch {'×'.join(map(str, metadata.patch_size))}")
    spacing = trained_spacing(metadata)
    parts.append("model space: unrecorded" if spacing is None else f"model space {'×'.join(f'{s:g}' for s in spacing)} mm")
    return "; ".join(parts) + "."


def inputs_summary(metadata: CheckpointMetadata) -> str:
    """``"FLAIR, T1w (optional: T2w)"``: the required inputs, then the optional ones."""
    optional = metadata.optional_modalities
    return ", ".join(required_modalities(metadata)) + (f" (optional: {', '.join(optional)})" if optional else "")


def runnable_first(infos: Sequence[CheckpointInfo], available: Sequence[str]) -> list[tuple[CheckpointInfo, list[str]]]:
    """Checkpoints that can run on `available` modalities first, then the others; each with what it lacks.

    Within each group the order of `infos` is kept (the user's, then the bundled ones).
    """
    ranked = [(info, missing_modalities(info.metadata, available)) for info in infos]
    return [pair for pair in ranked if not pair[1]] + [pair for pair in ranked if pair[1]]


def pick_by_beta(
    infos: Sequence[CheckpointInfo], beta: float, available: Sequence[str], subject: str | None = None
) -> CheckpointInfo:
    """The checkpoint with F-beta `beta` that runs on `available` and uses the most of them.

    A fine-tuned checkpoint competes only for the subject it was tuned on (`choice.tuned_on`), as in
    the Inference dock: one patient's fine-tune is not every patient's model. Among checkpoints that
    use as many inputs: the newest tuned on `subject`, then the user's own before the bundled, then
    `choice.BUNDLED_PREFERENCE`, then the first listed.

    Raises:
        CheckpointError: none with that beta, or none of them can run on `available`; the message
            lists what each one needs.
    """
    infos = [info for info in infos if not info.metadata.parent or (subject is not None and tuned_on(info) == subject)]
    same_beta = [info for info in infos if info.metadata.beta is not None and abs(info.metadata.beta - beta) < 1e-9]
    if not same_beta:
        betas = sorted({info.metadata.beta for info in infos if info.metadata.beta is not None})
        raise CheckpointError(
            f"no checkpoint has beta {beta:g}; betas available: {', '.join(f'{b:g}' for b in betas) or 'none'} "
            "(`lesionseg checkpoints` lists them)"
        )
    runnable = [info for info, missing in runnable_first(same_beta, available) if not missing]
    if not runnable:
        needs = "; ".join(f"{info.name} needs {inputs_summary(info.metadata)}" for info in same_beta)
        raise CheckpointError(
            f"no checkpoint with beta {beta:g} can run on the inputs given ({', '.join(available) or 'none'}): "
            f"{needs}. Add the missing images, or train one on these modalities (`lesionseg train --modalities ...`)"
        )
    def preference(info: CheckpointInfo) -> tuple[int, bool, str, bool, int]:
        mine = subject is not None and tuned_on(info) == subject
        used = len(used_modalities(info.metadata, available))
        return used, mine, info.metadata.created if mine else "", info.source == "user", -bundled_rank(info)

    return max(runnable, key=preference)  # max keeps the first of equals


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
