"""Which checkpoint a user is offered: the bundled beta-1.5 model for the loaded modalities unless they
pinned another, fine-tuned models grouped under their parent and first only for the subject they were
tuned on. Headless: the Inference and Fine-tune docks and `lesionseg predict` share it."""

from __future__ import annotations

from collections.abc import Sequence

from napari_lesionseg.constants import BEST_BETA
from napari_lesionseg.engine.checkpoints import CheckpointInfo
from napari_lesionseg.engine.requirements import missing_modalities, used_modalities

__all__ = ["BUNDLED_PREFERENCE", "bundled_rank", "can_run", "default_checkpoint", "grouped", "tuned_on"]

#: Bundled checkpoints in the order they are preferred among those using as many of the loaded inputs,
#: from the held-out validation (README, "The validation table"; `scripts/validate_family.py`): with the
#: FLAIR alone or FLAIR + T1w the phantom-trained networks for those inputs beat the generator-trained
#: ones; with the four phantom inputs the generator-trained network (optional inputs) beats the
#: phantom-trained four-input one at 1 mm, skull-stripped and at very low load, and trails it at 2 mm.
#: At beta 1.0 and 3.0 the generator-trained network comes first too (2 mm: DSC 0.800 against 0.752,
#: 0.662 against 0.660). The others follow in listing order.
BUNDLED_PREFERENCE = (
    "fbeta_1.5_flair", "fbeta_1.5_flair-t1w", "fbeta_1.5_generator", "fbeta_1.5",
    "fbeta_1.0_generator", "fbeta_1.0", "fbeta_3.0_generator", "fbeta_3.0",
)  # fmt: skip


def can_run(info: CheckpointInfo, modalities: Sequence[str]) -> bool:
    """Whether every input the checkpoint requires is among `modalities` (case-insensitive; optional ones may lack)."""
    return not missing_modalities(info.metadata, modalities)


def bundled_rank(info: CheckpointInfo) -> int:
    """A bundled checkpoint's place in `BUNDLED_PREFERENCE`; every other checkpoint comes after those."""
    listed = info.source == "bundled" and info.name in BUNDLED_PREFERENCE
    return BUNDLED_PREFERENCE.index(info.name) if listed else len(BUNDLED_PREFERENCE)


def tuned_on(info: CheckpointInfo) -> str | None:
    """The viewer subject a fine-tuned checkpoint was trained on, if it records one."""
    record = info.metadata.training.get("fine_tune") if isinstance(info.metadata.training, dict) else None
    subjects = record.get("viewer_subjects") if isinstance(record, dict) else None
    return subjects[0].get("name") if isinstance(subjects, list) and subjects and isinstance(subjects[0], dict) else None


def grouped(infos: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
    """Checkpoints without a parent (bundled first, then by beta), each followed by the ones fine-tuned from it."""
    names = {info.name for info in infos}
    roots = [info for info in infos if not info.metadata.parent or info.metadata.parent not in names]
    roots.sort(key=lambda i: (i.source != "bundled", i.metadata.beta is None, i.metadata.beta or 0.0, i.name))
    ordered: list[CheckpointInfo] = []

    def add_with_children(info: CheckpointInfo) -> None:
        ordered.append(info)
        children = [c for c in infos if c.metadata.parent == info.name and c is not info]
        for child in sorted(children, key=lambda c: c.metadata.created, reverse=True):
            if child not in ordered:
                add_with_children(child)

    for root in roots:
        add_with_children(root)
    return ordered + [info for info in infos if info not in ordered]


def default_checkpoint(
    infos: Sequence[CheckpointInfo], *, modalities: Sequence[str] = (), subject: str | None = None
) -> CheckpointInfo | None:
    """The checkpoint to preselect.

    A checkpoint fine-tuned on `subject` (the newest) when there is one that can run; else the bundled
    beta-1.5 model that can run on `modalities` (the most inputs first, then `BUNDLED_PREFERENCE`); else
    any runnable bundled one, any runnable one, the first listed.
    """
    runnable = [info for info in infos if not modalities or can_run(info, modalities)]
    if subject is not None:
        mine = [info for info in runnable if tuned_on(info) == subject]
        if mine:
            return max(mine, key=lambda i: i.metadata.created)
    by_inputs = sorted(
        runnable, key=lambda i: (-len(used_modalities(i.metadata, modalities or i.metadata.modalities)), bundled_rank(i))
    )
    for candidates in (
        [i for i in by_inputs if i.source == "bundled" and i.metadata.beta == BEST_BETA],
        [i for i in by_inputs if i.source == "bundled"],
        [i for i in by_inputs if not i.metadata.parent],
        by_inputs,
        list(infos),
    ):
        if candidates:
            return candidates[0]
    return None
