"""Lesion-centred patches: a share of each subject's patches centred near one lesion, every lesion equally likely."""

import numpy as np
import pytest

from napari_lesionseg.constants import MIN_LESION_VOXELS
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training.config import TrainingConfig
from napari_lesionseg.training.data import TrainingSubject
from napari_lesionseg.training.sampling import LesionCentres, PatchSampler

SHAPE = (32, 32, 32)
PATCH = (8, 8, 8)


def _subject(tiny_only: bool = False) -> TrainingSubject:
    """One large lesion (216 voxels) and two tiny ones (2 voxels each), far apart; or the tiny ones alone."""
    mask = np.zeros(SHAPE, bool)
    if not tiny_only:
        mask[4:10, 4:10, 4:10] = True
    mask[25, 25, 25:27] = True
    mask[25, 5, 25:27] = True
    image = np.ones((1, *SHAPE), np.float32)
    return TrainingSubject("s", image, mask, (1.0, 1.0, 1.0))


def _lesions_in(mask: np.ndarray) -> set[str]:
    """Which of the three lesions a patch's mask holds (by their size)."""
    from scipy import ndimage as ndi

    labels, count = ndi.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    return {"tiny" if size <= 2 else "large" for size in sizes}


def test_lesion_centres_find_every_lesion_and_draw_each_about_equally():
    centres = LesionCentres(_subject().mask)
    assert centres.count == 3
    drawn = centres.draw(3000, np.random.default_rng(0))
    mask = _subject().mask
    assert mask[tuple(drawn.T)].all()  # without jitter every centre is a lesion voxel
    tiny = np.count_nonzero(drawn[:, 0] == 25)
    assert 1700 < tiny < 2300  # two of the three lesions, though they hold 4 of the 220 voxels


def test_without_lesion_patches_the_sampler_draws_what_it_drew_before():
    subject = _subject()
    plain = PatchSampler([subject], PATCH, 6, seed=3, brain_fraction=0.25)
    explicit = PatchSampler([subject], PATCH, 6, seed=3, brain_fraction=0.25, lesion_fraction=0.0)
    assert plain.epoch(2) == explicit.epoch(2)


def test_the_paper_rule_never_shows_a_tiny_lesion_and_lesion_patches_do():
    subject = _subject()
    paper = PatchSampler([subject], PATCH, 8, seed=1)
    mixed = PatchSampler([subject], PATCH, 8, seed=1, lesion_fraction=0.5)
    assert mixed.lesion_patches == 4 and len(mixed) == 8
    seen_paper, seen_mixed = set(), set()
    for epoch in range(10):
        seen_paper |= set().union(*(_lesions_in(paper.extract(spec)[1]) for spec in paper.epoch(epoch)))
        specs = mixed.epoch(epoch)
        for spec in specs[:4]:  # the paper's selection keeps its share
            assert mixed.extract(spec)[1].sum() >= MIN_LESION_VOXELS
        for spec in specs[4:]:
            held = _lesions_in(mixed.extract(spec)[1])
            assert held  # centred near a lesion: the patch holds some of it
            seen_mixed |= held
    assert seen_paper == {"large"}
    assert seen_mixed == {"large", "tiny"}


def test_a_subject_with_only_tiny_lesions_is_kept_when_lesion_patches_are_on():
    subject = _subject(tiny_only=True)
    with pytest.raises(InvalidInputError, match="no training subject"):
        PatchSampler([subject], PATCH, 4)
    sampler = PatchSampler([subject], PATCH, 4, lesion_fraction=0.25)
    specs = sampler.epoch(0)
    assert len(specs) == 4
    assert all(sampler.extract(spec)[1].sum() > 0 for spec in specs)


@pytest.mark.parametrize(("lesion", "brain"), [(-0.1, 0.0), (1.0, 0.0), (0.5, 0.5)])
def test_shares_that_leave_nothing_for_the_paper_rule_are_refused(lesion, brain, tmp_path):
    with pytest.raises(InvalidInputError, match="lesion-centred"):
        PatchSampler([_subject()], PATCH, 4, lesion_fraction=lesion, brain_fraction=brain)
    with pytest.raises(InvalidInputError, match="lesion-centred"):
        TrainingConfig(data=[tmp_path], out=tmp_path / "m.pt", lesion_patch_fraction=lesion, brain_patch_fraction=brain)


def test_the_share_is_part_of_the_runs_identity(tmp_path):
    config = TrainingConfig(data=[tmp_path], out=tmp_path / "m.pt", lesion_patch_fraction=0.25)
    assert config.identity()["lesion_patch_fraction"] == 0.25
