"""Patches for a fine-tune on a correction: where the user changed the mask, lesions, brain, earlier cases.

The paper's selection (>= 10 lesion voxels per patch) never shows the network the grey matter it
wrongly marks, so a fine-tune on it learns nothing about false positives. A fine-tune on a
correction draws, in turn:

* ``"correction"``: a patch centred on a region the user changed: a rejected false positive (hard
  negative) or a painted missed lesion / grown border (hard positive); each changed component is
  equally likely, so a few large edits do not drown many small ones;
* ``"lesion"``: a patch with >= `constants.MIN_LESION_VOXELS` lesion voxels (the paper's rule);
* ``"brain"``: a patch centred anywhere in the head (the normalisation's foreground);
* ``"replay"``: a lesion or brain patch of an earlier case (`training.replay`), so the network does
  not forget the scanners it was corrected on before.

Candidate centres are found once per subject (`SubjectCandidates`); drawing a patch costs a few
random numbers and one array lookup, whatever the volume's size. A held-out slab of the corrected
subject (`held_out_slab`) never contributes to the loss: its voxels get weight 0 in every patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_lesionseg.constants import MIN_LESION_VOXELS
from napari_lesionseg.engine.patches import TTA_SETS
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training import sampling
from napari_lesionseg.training.data import TrainingSubject
from napari_lesionseg.training.sampling import PatchSpec, augment

__all__ = [
    "KINDS",
    "CorrectionRegions",
    "CorrectionSampler",
    "SubjectCandidates",
    "correction_regions",
    "held_out_slab",
]

#: The kinds of patch a step's batch cycles through, in this order.
KINDS: tuple[str, ...] = ("correction", "lesion", "brain", "replay")


@dataclass(frozen=True)
class CorrectionRegions:
    """What a correction changed: predicted lesion the user removed, and lesion the user added."""

    rejected: np.ndarray
    painted: np.ndarray

    @property
    def changed(self) -> np.ndarray:
        """Every voxel whose label the user changed."""
        return self.rejected | self.painted


def correction_regions(predicted: np.ndarray, corrected: np.ndarray) -> CorrectionRegions:
    """Rejected (predicted, not in the corrected mask) and painted (corrected, not predicted) voxels."""
    predicted, corrected = np.asarray(predicted) != 0, np.asarray(corrected) != 0
    if predicted.shape != corrected.shape:
        raise InvalidInputError(
            f"the run's mask has shape {predicted.shape} but the corrected mask {corrected.shape}: the prediction "
            "the user corrected must lie on the corrected mask's grid"
        )
    return CorrectionRegions(rejected=predicted & ~corrected, painted=corrected & ~predicted)


def held_out_slab(mask: np.ndarray, fraction: float) -> tuple[int, int]:
    """Axial rows [z0, z1) holding about `fraction` of the lesion voxels (their 70-90 % quantile band when 0.2).

    The band sits above the middle of the lesions, so that both the training part and the held-out
    part hold periventricular lesions and the grey matter around them. Returns (0, 0) for fraction 0.
    """
    if not 0 <= fraction < 1:
        raise InvalidInputError(f"held-out fraction must be in [0, 1), got {fraction}")
    rows = np.nonzero(np.asarray(mask) != 0)[0]
    if fraction == 0 or rows.size == 0:
        return 0, 0
    top = min(0.9, 1 - fraction / 2)
    z0, z1 = np.quantile(rows, [max(0.0, top - fraction), top])
    return int(np.floor(z0)), int(np.floor(z1)) + 1


class SubjectCandidates:
    """Where patches of one subject may start, per kind, found once; `draw` costs O(1).

    Args:
        subject: the subject (normalised image, mask), at least one patch large.
        patch_size: (z, y, x) voxels.
        regions: the user's changes (only for the corrected subject).
        excluded: voxels that never count in the loss (the held-out slab), or None.
        min_lesion_voxels: lesion voxels (outside `excluded`) a "lesion" patch needs.
    """

    def __init__(
        self,
        subject: TrainingSubject,
        patch_size: Sequence[int],
        *,
        regions: CorrectionRegions | None = None,
        excluded: np.ndarray | None = None,
        min_lesion_voxels: int = MIN_LESION_VOXELS,
    ) -> None:
        self.subject = subject
        self.patch_size = tuple(int(p) for p in patch_size)
        shape = subject.mask.shape
        self.grid = tuple(n - p + 1 for n, p in zip(shape, sampling._check_fits(shape, self.patch_size)))
        self.excluded = np.zeros(shape, bool) if excluded is None else np.asarray(excluded, bool)
        usable = ~self.excluded
        self.lesion_starts = sampling.valid_patch_starts(subject.mask & usable, self.patch_size, min_lesion_voxels)
        foreground = np.any(subject.image != 0, axis=0) & usable
        self.brain_centres = np.flatnonzero(foreground if foreground.any() else usable)
        self.rejected = _Components(regions.rejected & usable if regions is not None else None)
        self.painted = _Components(regions.painted & usable if regions is not None else None)

    @property
    def n_corrections(self) -> int:
        """Changed regions (connected components) outside the held-out slab."""
        return self.rejected.count + self.painted.count

    def draw(self, kind: str, rng: np.random.Generator) -> tuple[int, int, int]:
        """A patch start of `kind` ("correction", "lesion" or "brain"), falling back to the next kind if none."""
        if kind == "correction" and self.n_corrections:
            pick = int(rng.integers(self.n_corrections))
            if pick < self.rejected.count:
                return self._centred(self.rejected.voxel(pick, rng), rng)
            return self._centred(self.painted.voxel(pick - self.rejected.count, rng), rng)
        if kind in ("correction", "lesion") and self.lesion_starts.size:
            flat = int(self.lesion_starts[rng.integers(self.lesion_starts.size)])
            return tuple(int(v) for v in np.unravel_index(flat, self.grid))  # type: ignore[return-value]
        return self._centred(int(self.brain_centres[rng.integers(self.brain_centres.size)]), rng)

    def _centred(self, flat_voxel: int, rng: np.random.Generator) -> tuple[int, int, int]:
        """The start of a patch holding the voxel near its middle (up to a quarter patch off), inside the volume."""
        centre = np.unravel_index(flat_voxel, self.subject.mask.shape)
        start = []
        for c, p, n in zip(centre, self.patch_size, self.grid):
            jitter = int(rng.integers(-(p // 4), p // 4 + 1))
            start.append(int(np.clip(c - p // 2 + jitter, 0, n - 1)))
        return tuple(start)  # type: ignore[return-value]


class _Components:
    """The voxels of each connected component of a mask, as one sorted array and offsets."""

    def __init__(self, mask: np.ndarray | None) -> None:
        if mask is None or not mask.any():
            self.voxels, self.offsets = np.zeros(0, np.int64), np.zeros(1, np.int64)
        else:
            labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
            flat = np.flatnonzero(labels)
            order = np.argsort(labels.ravel()[flat], kind="stable")
            self.voxels = flat[order]
            self.offsets = np.concatenate([[0], np.cumsum(np.bincount(labels.ravel()[flat], minlength=count + 1)[1:])])

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def voxel(self, component: int, rng: np.random.Generator) -> int:
        """A random voxel of `component` (0-based)."""
        low, high = int(self.offsets[component]), int(self.offsets[component + 1])
        return int(self.voxels[low + int(rng.integers(high - low))])


class CorrectionSampler:
    """The batches of a fine-tune on a correction: subject 0 is the corrected one, the others are replayed.

    Batch slot i of step s draws kind ``KINDS[(s * batch_size + i) % 4]`` so every batch size gets the
    same mix over a run; "replay" falls back to the corrected subject's kinds when nothing is replayed.
    The patches of step s depend only on (seed, s).
    """

    def __init__(
        self,
        corrected: SubjectCandidates,
        replay: Sequence[SubjectCandidates] = (),
        *,
        batch_size: int,
        augment: str = "paper",
        seed: int = 0,
    ) -> None:
        if augment not in TTA_SETS:
            raise InvalidInputError(f"unknown augmentation {augment!r}; expected one of {tuple(TTA_SETS)}")
        self.candidates = [corrected, *replay]
        self.batch_size, self.variants, self.seed = int(batch_size), TTA_SETS[augment], int(seed)

    def batch(self, step: int) -> list[tuple[str, PatchSpec]]:
        """The (kind, patch) pairs of `step` (0-based)."""
        rng = np.random.default_rng([self.seed, int(step)])
        picked = []
        for slot in range(self.batch_size):
            kind = KINDS[(step * self.batch_size + slot) % len(KINDS)]
            if kind == "replay" and len(self.candidates) > 1:
                index = 1 + int(rng.integers(len(self.candidates) - 1))
                start = self.candidates[index].draw("lesion" if rng.random() < 0.5 else "brain", rng)
            else:
                index = 0
                own = KINDS[(step + slot) % 3] if kind == "replay" else kind
                start = self.candidates[0].draw(own, rng)
            variant = self.variants[int(rng.integers(len(self.variants)))]
            picked.append((kind, PatchSpec(index, start, variant)))
        return picked

    def extract(self, spec: PatchSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (C, z, y, x), mask and loss weight (z, y, x; 0 in the held-out slab) of `spec`, augmented."""
        candidates = self.candidates[spec.subject]
        window = tuple(slice(s, s + p) for s, p in zip(spec.start, candidates.patch_size))
        subject = candidates.subject
        image = augment(subject.image[(slice(None), *window)], spec.variant).astype(np.float32, copy=False)
        mask = augment(subject.mask[window], spec.variant).astype(np.float32)
        return image, mask, augment(~candidates.excluded[window], spec.variant)
