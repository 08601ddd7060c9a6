"""Training patches from whole volumes: the paper's selection (Sec. III.E.2) and augmentation (Sec. III.C).

* Selection: a patch feeds the network only if it holds at least `min_lesion_voxels` lesion voxels
  (`constants.MIN_LESION_VOXELS` = 10, because similarity losses cannot learn from patches without
  true positives). Patches are drawn uniformly among *all* qualifying positions, found exactly
  with a summed-volume table, and every subject gives the same number of patches per epoch.
* Subjects with no qualifying position (fewer lesion voxels than the threshold) are skipped with
  a warning; if none qualifies, sampling fails with a message that says what to do.
* Augmentation: a random variant per patch from a `patches.TTA_SETS` set, the same flips
  inference uses: ``"paper"`` is identity and a 180-degree rotation in each of the three planes,
  ``"mirror8"`` adds the four mirror images, ``"none"`` keeps patches as they are.
* Modality dropout: each optional input channel of a patch is zeroed (as inference feeds an absent
  one) with probability `channel_dropout`, so one network learns to run with and without it.
* Brain patches (not in the paper): a share `brain_fraction` of each subject's patches is centred
  on a head/brain voxel (any input channel non-zero after the normalisation) whatever it holds, so
  the network also sees lesion-free tissue, as the fine-tune's brain patches do. Off by default.
* Lesion-centred patches (not in the paper): a share `lesion_fraction` of each subject's patches is
  centred near one lesion (a 26-connected component), every lesion equally likely whatever its
  size. Uniform draws among qualifying positions favour the large lesions, which fill more of
  them, and a lesion under `min_lesion_voxels` voxels alone never qualifies; these patches show the
  small ones as often as the large. A subject whose lesions are all too small for the paper's rule
  then draws all its lesion patches this way instead of being skipped. Off by default.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.constants import MIN_LESION_VOXELS
from napari_lesionseg.engine.patches import TTA_SETS
from napari_lesionseg.engine.patches import augment as flip_variant
from napari_lesionseg.errors import InvalidInputError

if TYPE_CHECKING:
    from napari_lesionseg.training.data import TrainingSubject

__all__ = [
    "LesionCentres",
    "PatchSampler",
    "PatchSpec",
    "augment",
    "brain_patch_starts",
    "lesion_counts",
    "valid_patch_starts",
]


@dataclass(frozen=True)
class PatchSpec:
    """One training patch: which subject, where it starts (z, y, x), and its augmentation variant."""

    subject: int
    start: tuple[int, int, int]
    variant: str
    #: input channels zeroed in this patch (modality dropout).
    dropped: tuple[int, ...] = ()


def augment(array: np.ndarray, variant: str) -> np.ndarray:
    """`array` with augmentation `variant` (a `patches.TTA_VARIANTS` name) applied to its last three axes."""
    return np.ascontiguousarray(flip_variant(array, variant))


def lesion_counts(mask: np.ndarray, patch_size: Sequence[int]) -> np.ndarray:
    """Lesion voxels inside the patch starting at every valid (z, y, x) position.

    Returns an int array of shape ``mask.shape - patch_size + 1`` computed with a summed-volume
    table, so all positions cost one pass over the volume.
    """
    size = _check_fits(mask.shape, patch_size)
    table = np.zeros(tuple(s + 1 for s in mask.shape), dtype=np.int64)
    table[1:, 1:, 1:] = mask.astype(bool).cumsum(0).cumsum(1).cumsum(2)
    counts = np.zeros(tuple(s - p + 1 for s, p in zip(mask.shape, size)), dtype=np.int64)
    for corner in itertools.product((0, 1), repeat=3):
        sign = (-1) ** (3 - sum(corner))
        index = tuple(
            slice(c * p, c * p + n) for c, p, n in zip(corner, size, counts.shape)
        )
        counts += sign * table[index]
    return counts


def valid_patch_starts(
    mask: np.ndarray, patch_size: Sequence[int], min_lesion_voxels: int = MIN_LESION_VOXELS
) -> np.ndarray:
    """Flat indices (into the start grid ``mask.shape - patch_size + 1``) of patches that qualify."""
    counts = lesion_counts(mask, patch_size)
    return np.flatnonzero(counts >= max(0, int(min_lesion_voxels)))


class PatchSampler:
    """Draws the same number of qualifying, augmented patches from every subject, per epoch.

    Args:
        subjects: training subjects (volumes at least as large as the patch).
        patch_size: (z, y, x) patch size in voxels.
        patches_per_subject: patches drawn from each subject per epoch.
        min_lesion_voxels: minimum lesion voxels per patch (0 draws uniformly over the volume).
        augment: a `patches.TTA_SETS` name: "paper", "mirror8" or "none".
        seed: with the epoch number, fixes the patches of that epoch.
        optional_channels: channel indices that modality dropout may zero.
        channel_dropout: chance that each optional channel is zeroed in a patch.
        brain_fraction: share of each subject's patches centred anywhere in its head/brain, lesions
            or not (rounded to whole patches; 0: the paper's selection only).
        lesion_fraction: share of each subject's patches centred near one lesion, each lesion
            equally likely (rounded to whole patches; 0: none).
    """

    def __init__(
        self,
        subjects: Sequence[TrainingSubject],
        patch_size: Sequence[int],
        patches_per_subject: int,
        min_lesion_voxels: int = MIN_LESION_VOXELS,
        augment: str = "paper",
        seed: int = 0,
        optional_channels: Sequence[int] = (),
        channel_dropout: float = 0.0,
        brain_fraction: float = 0.0,
        lesion_fraction: float = 0.0,
    ) -> None:
        if not 0.0 <= channel_dropout < 1.0:
            raise InvalidInputError(f"modality dropout must be in [0, 1), got {channel_dropout}")
        if not 0.0 <= brain_fraction < 1.0:
            raise InvalidInputError(f"the share of brain patches must be in [0, 1), got {brain_fraction}")
        if not 0.0 <= lesion_fraction < 1.0 or brain_fraction + lesion_fraction >= 1.0:
            raise InvalidInputError(
                f"the shares of lesion-centred ({lesion_fraction}) and brain ({brain_fraction}) patches must "
                "each be in [0, 1) and leave some patches to the paper's selection"
            )
        if augment not in TTA_SETS:
            raise InvalidInputError(f"unknown augmentation {augment!r}; expected one of {tuple(TTA_SETS)}")
        if patches_per_subject < 1:
            raise InvalidInputError(f"patches_per_subject must be >= 1, got {patches_per_subject}")
        self.subjects = list(subjects)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.patches_per_subject = int(patches_per_subject)
        self.variants = TTA_SETS[augment]
        self.seed = int(seed)
        self.optional_channels = tuple(int(c) for c in optional_channels)
        self.channel_dropout = float(channel_dropout)
        self._grids = [
            tuple(n - p + 1 for n, p in zip(s.mask.shape, _check_fits(s.mask.shape, self.patch_size)))
            for s in self.subjects
        ]
        # Without a lesion threshold every position qualifies: draw from the grid, store nothing.
        self._starts = [
            valid_patch_starts(s.mask, self.patch_size, min_lesion_voxels) if min_lesion_voxels > 0 else None
            for s in self.subjects
        ]
        self.lesion_patches = int(round(lesion_fraction * self.patches_per_subject))
        self._centres = [LesionCentres(s.mask) if self.lesion_patches else None for s in self.subjects]
        self.eligible = [
            i for i, starts in enumerate(self._starts)
            if starts is None or starts.size or (self._centres[i] is not None and self._centres[i].count)
        ]  # fmt: skip
        self._warn_skipped(min_lesion_voxels)
        self.brain_patches = int(round(brain_fraction * self.patches_per_subject))
        wanted = set(self.eligible) if self.brain_patches else set()
        self._brain_starts = [
            brain_patch_starts(s.image, self.patch_size) if i in wanted else None for i, s in enumerate(self.subjects)
        ]

    def _warn_skipped(self, min_lesion_voxels: int) -> None:
        skipped = [self.subjects[i].name for i in range(len(self.subjects)) if i not in self.eligible]
        if not self.eligible:
            raise InvalidInputError(
                f"no training subject has a {self.patch_size} patch with >= {min_lesion_voxels} lesion "
                f"voxels (subjects: {[s.name for s in self.subjects]}); add subjects with lesions, "
                "use a larger patch, or lower --min-lesion-voxels"
            )
        if skipped:
            warnings.warn(
                f"skipping {len(skipped)} subject(s) without a patch holding >= {min_lesion_voxels} "
                f"lesion voxels: {', '.join(skipped)}",
                stacklevel=3,
            )

    def __len__(self) -> int:
        """Patches per epoch."""
        return len(self.eligible) * self.patches_per_subject

    def epoch(self, epoch: int) -> list[PatchSpec]:
        """The patches of `epoch`, subject by subject (a distributed sampler shuffles them)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        brain_rng = np.random.default_rng([self.seed, int(epoch), 2])  # its own stream: without brain patches nothing changes
        centre_rng = np.random.default_rng([self.seed, int(epoch), 3])  # and one for the lesion-centred patches
        specs = []
        for index in self.eligible:
            starts = self._starts[index]
            paper_patches = self.patches_per_subject - self.brain_patches - self.lesion_patches
            if starts is None:
                picks = rng.integers(int(np.prod(self._grids[index])), size=paper_patches)
            elif starts.size:
                picks = rng.choice(starts, size=paper_patches)
            else:  # every lesion too small for the paper's rule: centre these on lesions too
                picks = self._lesion_centred(index, paper_patches, centre_rng)
            if self.lesion_patches:
                picks = np.concatenate([picks, self._lesion_centred(index, self.lesion_patches, centre_rng)])
            if self.brain_patches:
                picks = np.concatenate([picks, brain_rng.choice(self._brain_starts[index], size=self.brain_patches)])
            variants = rng.integers(len(self.variants), size=self.patches_per_subject)
            for flat, variant in zip(picks, variants):
                start = tuple(int(v) for v in np.unravel_index(flat, self._grids[index]))
                specs.append(PatchSpec(index, start, self.variants[variant]))
        return self._with_dropout(specs, epoch)

    def _lesion_centred(self, index: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """Flat start indices of `count` patches centred near lesions of subject `index`."""
        centres = self._centres[index].draw(count, rng, max(1, min(self.patch_size) // 4))
        grid = np.array(self._grids[index])
        starts = np.clip(centres - np.array(self.patch_size) // 2, 0, grid - 1)
        return np.ravel_multi_index(tuple(starts.T), self._grids[index])

    def _with_dropout(self, specs: list[PatchSpec], epoch: int) -> list[PatchSpec]:
        """`specs` with their dropped channels, from a stream of their own (without dropout, nothing changes)."""
        if not self.optional_channels or self.channel_dropout == 0.0:
            return specs
        rng = np.random.default_rng([self.seed, int(epoch), 1])
        draws = rng.random((len(specs), len(self.optional_channels))) < self.channel_dropout
        return [
            PatchSpec(spec.subject, spec.start, spec.variant, tuple(c for c, d in zip(self.optional_channels, row) if d))
            for spec, row in zip(specs, draws)
        ]

    def extract(self, spec: PatchSpec) -> tuple[np.ndarray, np.ndarray]:
        """Image (C, z, y, x) float32 and mask (z, y, x) float32 of `spec`, augmented."""
        subject = self.subjects[spec.subject]
        window = tuple(slice(s, s + p) for s, p in zip(spec.start, self.patch_size))
        image = augment(subject.image[(slice(None), *window)], spec.variant)
        if spec.dropped:
            image = image.copy()  # a whole-volume patch may be a view of the subject
            image[list(spec.dropped)] = 0.0
        return image, augment(subject.mask[window], spec.variant).astype(np.float32)


class LesionCentres:
    """The voxels of every lesion (26-connected component) of a mask, to draw patch centres lesion by lesion."""

    def __init__(self, mask: np.ndarray) -> None:
        labels, self.count = ndi.label(mask >= 0.5, structure=np.ones((3, 3, 3), dtype=bool))
        voxels = np.argwhere(labels)
        order = np.argsort(labels[tuple(voxels.T)], kind="stable")
        self._voxels = voxels[order]
        self._sizes = np.bincount(labels[tuple(self._voxels.T)], minlength=self.count + 1)[1:]
        self._first = np.concatenate([[0], np.cumsum(self._sizes)[:-1]]).astype(np.int64)

    def draw(self, count: int, rng: np.random.Generator, jitter: int = 0) -> np.ndarray:
        """`count` (z, y, x) centres: a lesion chosen uniformly, a voxel of it, moved by up to `jitter` per axis."""
        lesions = rng.integers(self.count, size=count)
        picks = self._first[lesions] + (rng.random(count) * self._sizes[lesions]).astype(np.int64)
        return self._voxels[picks] + rng.integers(-jitter, jitter + 1, size=(count, 3))


def brain_patch_starts(image: np.ndarray, patch_size: Sequence[int], step: int = 2) -> np.ndarray:
    """Flat start indices (as `valid_patch_starts`) of patches centred on head/brain voxels of a normalised ``(C, Z, Y, X)`` image.

    The normalisation sets every channel to 0 outside the head; centres are taken every `step`
    voxels along each axis (enough for random draws, an eighth of the memory).
    """
    shape = image.shape[1:]
    size = _check_fits(shape, patch_size)
    grid = tuple(n - p + 1 for n, p in zip(shape, size))
    head = np.any(image[(slice(None), *(slice(None, None, step),) * 3)] != 0, axis=0)
    centres = np.argwhere(head) * step
    if not len(centres):  # no head found: anywhere in the volume
        return np.arange(int(np.prod(grid)))
    starts = np.clip(centres - np.array(size) // 2, 0, np.array(grid) - 1)
    return np.unique(np.ravel_multi_index(tuple(starts.T), grid))


def _check_fits(shape: Sequence[int], patch_size: Sequence[int]) -> tuple[int, int, int]:
    """`patch_size` as ints, after checking that such a patch fits in a volume of `shape`."""
    size = tuple(int(p) for p in patch_size)
    if len(shape) != 3 or len(size) != 3 or any(p > n or p < 1 for p, n in zip(size, shape)):
        raise InvalidInputError(
            f"cannot place a {size} patch in a mask of shape {tuple(shape)}; the volume must be at "
            "least as large as the patch along every axis (pad it or choose a smaller --patch-size)"
        )
    return size  # type: ignore[return-value]
