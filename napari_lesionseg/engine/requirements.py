"""What a checkpoint needs from its inputs: the modalities (required, optional) and the voxel spacing.

Example:
    >>> channels = check_modalities(metadata, ("FLAIR", "T1w"))   # doctest: +SKIP
    >>> trained_spacing(metadata)                                  # doctest: +SKIP
    (2.0, 2.0, 2.0)
"""

from __future__ import annotations

from collections.abc import Sequence

from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.errors import CheckpointError

__all__ = ["check_modalities", "missing_modalities", "required_modalities", "trained_spacing", "used_modalities"]


def check_modalities(metadata: CheckpointMetadata, available: Sequence[str]) -> list[str | None]:
    """Return the available modalities in the checkpoint's channel order (names matched case-insensitively).

    A missing optional modality is None (the network gets background, 0, in its channel).

    Raises:
        CheckpointError: a modality the checkpoint requires is not available; the message names it.
    """
    missing = missing_modalities(metadata, available)
    if missing:
        optional = metadata.optional_modalities
        raise CheckpointError(
            f"checkpoint {metadata.name!r} needs the modalities {', '.join(required_modalities(metadata))}"
            + (f" (optional: {', '.join(optional)})" if optional else "")
            + f"; missing: {', '.join(missing)} (available: {', '.join(available) or 'none'}). Load the "
            "missing images or pick a checkpoint trained on the modalities you have (`lesionseg checkpoints` "
            "lists what each needs)"
        )
    by_key = {name.casefold(): name for name in available}
    return [by_key.get(name.casefold()) for name in metadata.modalities]


def required_modalities(metadata: CheckpointMetadata) -> list[str]:
    """The modalities the checkpoint cannot run without, in channel order."""
    optional = {name.casefold() for name in metadata.optional_modalities}
    return [name for name in metadata.modalities if name.casefold() not in optional]


def missing_modalities(metadata: CheckpointMetadata, available: Sequence[str]) -> list[str]:
    """The required modalities of the checkpoint that `available` lacks (case-insensitive)."""
    have = {name.casefold() for name in available}
    return [name for name in required_modalities(metadata) if name.casefold() not in have]


def trained_spacing(metadata: CheckpointMetadata) -> tuple[float, float, float] | None:
    """The voxel size the network was trained at: its `spacing`, else its training data's if recorded."""
    for spacing in (metadata.spacing, metadata.training.get("spacing")):
        if isinstance(spacing, (list, tuple)) and len(spacing) == 3:
            return tuple(float(s) for s in spacing)  # type: ignore[return-value]
    return None


def used_modalities(metadata: CheckpointMetadata, available: Sequence[str]) -> list[str]:
    """The checkpoint's inputs that are among `available` (case-insensitive): what it would run on."""
    have = {name.casefold() for name in available}
    return [name for name in metadata.modalities if name.casefold() in have]
