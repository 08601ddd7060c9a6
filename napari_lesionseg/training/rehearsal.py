"""Synthetic subjects a fine-tune can rehearse, so a generator-trained network keeps what it learnt there.

The generator-trained bundled networks learnt from the randomised training generator
(`data.phantom.randomized.make_training_subject`) and store no corrected cases (`training.replay`),
so a fine-tune on one correction sees one patient only. With `FineTuneRequest.rehearsal` N
(`lesionseg finetune --rehearse N`; default 0), `rehearsal_subjects` draws N generator subjects,
at the fine-tune's model spacing and with the inputs the corrected subject has, with realistic
contrasts; they share the "replay" patches (one in four, `correction_sampling.KINDS`) with any
replayed cases. Measured (docs/TRAINING.md, "Rehearsing the generator"): from the generator-trained
network it kept the original scanner better in every paired run, but it is not the default, by
the rules written before measuring; from a phantom-trained network the generator's subjects are
new data, not rehearsal, and cost the original scanner up to 0.14 of DSC. Seeds start at
`REHEARSAL_SEED`, disjoint from the bundled networks' training (30000-30047), validation
(31000-31015) and held-out (32000-32007) generator subjects, so the same request rehearses the same
subjects.
"""

from __future__ import annotations

import functools
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
    spacing = tuple(float(s) for s in spacing)
    if count < 1 or not np.allclose(spacing, spacing[0], rtol=1e-3):
        return []
    rendered = tuple(m for m in modalities if m in set(present))
    subjects = []
    for seed in range(REHEARSAL_SEED, REHEARSAL_SEED + int(count)):
        images, mask = _generated(seed, spacing[0], rendered)
        subjects.append(
            channels_subject(images, mask, spacing, f"generator-{seed}", modalities=modalities, optional=optional)
        )
    return subjects


@functools.lru_cache(maxsize=2)
def _generated(seed: int, spacing: float, modalities: tuple[str, ...]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One generator subject's images and mask, kept for the session's next fine-tune (rendering takes seconds;
    two at 1.5 mm hold about 100 MB)."""
    from napari_lesionseg.data.phantom.randomized import make_training_subject

    phantom = make_training_subject(seed, spacing, modalities=list(modalities), random_contrast=False)
    return phantom.images, phantom.mask
