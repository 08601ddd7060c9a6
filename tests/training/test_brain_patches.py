"""Brain patches: a share of each subject's training patches centred anywhere in the head, lesions or not."""

import numpy as np
import pytest

from napari_lesionseg.constants import MIN_LESION_VOXELS
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training.config import TrainingConfig
from napari_lesionseg.training.data import TrainingSubject
from napari_lesionseg.training.sampling import PatchSampler, brain_patch_starts

SHAPE = (24, 24, 24)


def _head_subject(name: str = "s") -> TrainingSubject:
    """A normalised-looking subject: a ball of 'head' (non-zero) in a zero background, one lesion in a corner of it."""
    z, y, x = np.indices(SHAPE)
    head = (z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 <= 10**2
    image = np.where(head, 1.0, 0.0)[None].repeat(2, axis=0).astype(np.float32)
    mask = np.zeros(SHAPE, bool)
    mask[5:8, 10:13, 10:13] = True  # 27 voxels near the top of the ball
    return TrainingSubject(name, image, mask, (1.0, 1.0, 1.0))


def _centre(spec, patch):
    return tuple(s + p // 2 for s, p in zip(spec.start, patch))


def test_without_brain_patches_the_sampler_draws_what_it_drew_before():
    subject = _head_subject()
    plain = PatchSampler([subject], (8, 8, 8), 6, seed=3)
    explicit = PatchSampler([subject], (8, 8, 8), 6, seed=3, brain_fraction=0.0)
    assert plain.epoch(2) == explicit.epoch(2)


def test_a_share_of_patches_is_centred_in_the_head_and_some_hold_no_lesion():
    subject = _head_subject()
    patch = (8, 8, 8)
    sampler = PatchSampler([subject], patch, 8, seed=1, brain_fraction=0.5)
    assert sampler.brain_patches == 4 and len(sampler) == 8
    lesion_free = 0
    for epoch in range(5):
        specs = sampler.epoch(epoch)
        assert len(specs) == 8
        lesion, brain = specs[:4], specs[4:]
        for spec in lesion:  # the paper's selection is kept for the others
            assert sampler.extract(spec)[1].sum() >= MIN_LESION_VOXELS
        for spec in brain:
            image, mask = sampler.extract(spec)
            centre = _centre(spec, patch)
            assert subject.image[0][centre] != 0 or image.any()  # centred in the head (clipped at the border)
            lesion_free += int(mask.sum() == 0)
    assert lesion_free > 0


def test_brain_starts_lie_in_the_start_grid_and_near_the_head():
    subject = _head_subject()
    starts = brain_patch_starts(subject.image, (8, 8, 8))
    grid = tuple(n - 8 + 1 for n in SHAPE)
    assert starts.size and starts.min() >= 0 and starts.max() < np.prod(grid)
    centres = np.stack(np.unravel_index(starts, grid), axis=1) + 4
    assert np.all(np.linalg.norm(centres - 12, axis=1) <= 10 + 2)  # every centre within the ball (step 2)


def test_an_image_with_no_head_draws_anywhere():
    starts = brain_patch_starts(np.zeros((1, 6, 6, 6), np.float32), (4, 4, 4))
    assert starts.tolist() == list(range(27))


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_a_share_outside_zero_to_one_is_refused(fraction, tmp_path):
    with pytest.raises(InvalidInputError, match="share of brain patches"):
        PatchSampler([_head_subject()], (8, 8, 8), 4, brain_fraction=fraction)
    with pytest.raises(InvalidInputError, match="share of brain patches"):
        TrainingConfig(data=[tmp_path], out=tmp_path / "m.pt", brain_patch_fraction=fraction)


def test_the_share_is_part_of_the_runs_identity(tmp_path):
    config = TrainingConfig(data=[tmp_path], out=tmp_path / "m.pt", brain_patch_fraction=0.25)
    assert config.identity()["brain_patch_fraction"] == 0.25
