"""Synthetic subjects a fine-tune rehearses when its start has no earlier corrected cases.

A bundled checkpoint learnt from the randomised training generator
(`data.phantom.randomized.make_training_subject`) and stores no corrected cases (`training.replay`),
so its first fine-tune on a correction would see one patient only and drift from what it knew.
`rehearsal_subjects` draws a few generator subjects for it instead, at the fine-tune's model
spacing and with the inputs the corrected subject has, with realistic contrasts; they fill the
"replay" patches (one in four, `correction_sampling.KINDS`). Their seeds start at
`REHEARSAL_SEED`, disjoint from the bundled networks' training (30000-30047), validation
(31000-31015) and held-out (32000-32007) generator subjects, so the same request rehearses the same
subjects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_lesionseg.training.data import TrainingSubject, channels_subject

__all__ = ["REHEARSAL_SEED", "rehearsal_subjects"]

#: Seed of the first rehearsed generator subject (then +1, +2, ...).
REHEARSAL_SEED = 34000


def rehearsal_subjects(
    count: int,
    *,
    modalities: Sequence[str],
    optional: Sequence[str],
    present: Sequence[str],
    spacing: Sequence[float],
) -> list[TrainingSubject]:
    """`count` generator subjects in the checkpoint's channels (`modalities`), rendered with the ones of
    them the corrected subject has (`present`) at its isotropic `spacing`; none where it is not isotropic."""
    from napari_lesionseg.data.phantom.randomized import make_training_subject

    spacing = tuple(float(s) for s in spacing)
    if count < 1 or not np.allclose(spacing, spacing[0], rtol=1e-3):
        return []
    rendered = [m for m in modalities if m in set(present)]
    subjects = []
    for seed in range(REHEARSAL_SEED, REHEARSAL_SEED + int(count)):
        phantom = make_training_subject(seed, spacing[0], modalities=rendered, random_contrast=False)
        subjects.append(
            channels_subject(
                phantom.images, phantom.mask, spacing, f"generator-{seed}", modalities=modalities, optional=optional
            )
        )
    return subjects
