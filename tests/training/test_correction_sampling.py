"""Patches for a fine-tune on a correction: corrected regions, the held-out slab, the mix, the cost of a draw."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training import sampling
from napari_lesionseg.training.correction_sampling import (
    KINDS,
    CorrectionSampler,
    SubjectCandidates,
    correction_regions,
    held_out_slab,
)
from napari_lesionseg.training.data import TrainingSubject

SHAPE = (40, 40, 40)
PATCH = (8, 8, 8)


def _subject(name: str = "s", seed: int = 0) -> TrainingSubject:
    """A head (nonzero image) inside a zero background, with two box lesions."""
    image = np.zeros((2, *SHAPE), np.float32)
    image[:, 4:36, 4:36, 4:36] = np.random.default_rng(seed).normal(size=(2, 32, 32, 32)) + 3
    mask = np.zeros(SHAPE, bool)
    mask[10:14, 10:14, 10:14] = True  # kept from the prediction
    mask[26:29, 26:29, 26:29] = True  # painted by the user: the network missed it
    return TrainingSubject(name, image, mask, (1.0, 1.0, 1.0))


def _prediction(subject: TrainingSubject) -> np.ndarray:
    predicted = subject.mask.copy()
    predicted[26:29, 26:29, 26:29] = False  # missed
    predicted[10:13, 28:31, 8:11] = True  # a false positive the user rejected
    return predicted


def _window(start, patch=PATCH):
    return tuple(slice(s, s + p) for s, p in zip(start, patch))


def test_correction_regions_are_the_rejected_and_painted_voxels():
    subject = _subject()
    regions = correction_regions(_prediction(subject), subject.mask)
    assert np.array_equal(np.argwhere(regions.rejected).min(0), [10, 28, 8]) and regions.rejected.sum() == 27
    assert np.array_equal(np.argwhere(regions.painted).min(0), [26, 26, 26]) and regions.painted.sum() == 27
    assert regions.changed.sum() == 54
    with pytest.raises(InvalidInputError, match="the run's mask has shape"):
        correction_regions(np.zeros((4, 4, 4)), subject.mask)


def test_correction_patches_are_centred_on_the_rejected_and_the_painted_regions():
    subject = _subject()
    regions = correction_regions(_prediction(subject), subject.mask)
    candidates = SubjectCandidates(subject, PATCH, regions=regions)
    assert candidates.n_corrections == 2
    rng = np.random.default_rng(0)
    hits = {"rejected": 0, "painted": 0}
    for _ in range(200):
        window = _window(candidates.draw("correction", rng))
        rejected, painted = regions.rejected[window].any(), regions.painted[window].any()
        assert rejected or painted  # every correction patch holds a corrected voxel
        hits["rejected"] += int(rejected)
        hits["painted"] += int(painted)
    assert hits["rejected"] > 60 and hits["painted"] > 60  # each edit equally likely


def test_without_corrections_a_correction_slot_takes_a_lesion_patch():
    subject = _subject()
    candidates = SubjectCandidates(subject, PATCH)  # the user accepted the prediction as it was
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert subject.mask[_window(candidates.draw("correction", rng))].sum() >= 10


def test_brain_patches_are_centred_in_the_head():
    candidates = SubjectCandidates(_subject(), PATCH)
    rng = np.random.default_rng(2)
    for _ in range(100):
        centre = np.array(candidates.draw("brain", rng)) + np.array(PATCH) // 2
        assert np.all(centre >= 4 - 2) and np.all(centre < 36 + 2)  # up to a quarter patch of jitter


def test_the_held_out_slab_never_counts():
    subject = _subject()
    rows = held_out_slab(subject.mask, 0.2)
    assert 0 < rows[0] < rows[1] <= SHAPE[0]
    excluded = np.zeros(SHAPE, bool)
    excluded[rows[0] : rows[1]] = True
    candidates = SubjectCandidates(subject, PATCH, regions=correction_regions(_prediction(subject), subject.mask),
                                   excluded=excluded)  # fmt: skip
    sampler = CorrectionSampler(candidates, batch_size=4, seed=3)
    for step in range(20):
        for _, spec in sampler.batch(step):
            _, _, weight = sampler.extract(spec)
            assert weight.dtype == bool
            window = _window(spec.start)
            assert not np.any(sampling.augment(weight, spec.variant) & excluded[window])
    assert held_out_slab(subject.mask, 0.0) == (0, 0)


def test_batches_cycle_through_the_kinds_and_replay_earlier_subjects():
    corrected, earlier = _subject("now"), _subject("earlier", seed=1)
    sampler = CorrectionSampler(
        SubjectCandidates(corrected, PATCH, regions=correction_regions(_prediction(corrected), corrected.mask)),
        [SubjectCandidates(earlier, PATCH)], batch_size=2, seed=4,
    )  # fmt: skip
    picked = [pair for step in range(8) for pair in sampler.batch(step)]
    assert [kind for kind, _ in picked] == list(KINDS) * 4
    assert {spec.subject for kind, spec in picked if kind == "replay"} == {1}
    assert {spec.subject for kind, spec in picked if kind != "replay"} == {0}
    assert sampler.batch(5) == sampler.batch(5)
    alone = CorrectionSampler(SubjectCandidates(corrected, PATCH), batch_size=4, seed=4)
    assert all(spec.subject == 0 for step in range(4) for _, spec in alone.batch(step))


def test_candidates_are_found_once_and_a_draw_does_no_volume_work(monkeypatch):
    """Counting work: the summed-volume table and the component labelling run at set-up, never per step."""
    from scipy import ndimage

    calls = {"lesion_counts": 0, "label": 0}

    def counting(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(sampling, "lesion_counts", counting("lesion_counts", sampling.lesion_counts))
    monkeypatch.setattr(ndimage, "label", counting("label", ndimage.label))
    subjects = [_subject("a"), _subject("b", seed=1)]
    candidates = [SubjectCandidates(s, PATCH, regions=correction_regions(_prediction(s), s.mask)) for s in subjects]
    after_setup = dict(calls)
    assert after_setup == {"lesion_counts": 2, "label": 4}  # per subject: one table; rejected and painted labelled
    sampler = CorrectionSampler(candidates[0], candidates[1:], batch_size=4, seed=5)
    starts = [spec.start for step in range(500) for _, spec in sampler.batch(step)]
    assert calls == after_setup and len(starts) == 2000
