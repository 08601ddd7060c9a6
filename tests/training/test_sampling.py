"""Patch selection (>= 10 lesion voxels, equal patches per subject) and the paper's augmentation."""

import itertools
import warnings

import numpy as np
import pytest

from napari_lesionseg.constants import MIN_LESION_VOXELS
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training.data import TrainingSubject, pad_to_patch, subject_from_arrays
from napari_lesionseg.training.sampling import PatchSampler, augment, lesion_counts, valid_patch_starts


def _subject(name="s", shape=(12, 10, 11), lesion_boxes=(((2, 5), (2, 5), (3, 6)),), channels=2, seed=0):
    """A raw (unnormalised) subject with box lesions; the image encodes voxel positions."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for box in lesion_boxes:
        mask[tuple(slice(a, b) for a, b in box)] = True
    image = rng.normal(size=(channels, *shape)).astype(np.float32)
    return TrainingSubject(name, image, mask, (2.0, 2.0, 2.0))


class TestLesionCounts:
    def test_matches_brute_force(self):
        rng = np.random.default_rng(3)
        mask = rng.random((7, 6, 8)) < 0.2
        patch = (3, 4, 2)
        counts = lesion_counts(mask, patch)
        assert counts.shape == (5, 3, 7)
        for z, y, x in itertools.product(*map(range, counts.shape)):
            assert counts[z, y, x] == mask[z : z + 3, y : y + 4, x : x + 2].sum()

    def test_patch_equal_to_volume_gives_one_position(self):
        mask = np.zeros((4, 4, 4), bool)
        mask[1, 1, 1] = True
        assert lesion_counts(mask, (4, 4, 4)).tolist() == [[[1]]]

    def test_one_voxel_volume(self):
        assert lesion_counts(np.ones((1, 1, 1), bool), (1, 1, 1)).tolist() == [[[1]]]

    def test_patch_larger_than_volume_is_refused(self):
        with pytest.raises(InvalidInputError, match="at least as large as the patch"):
            lesion_counts(np.zeros((4, 4, 4), bool), (5, 4, 4))


class TestValidStarts:
    def test_threshold_is_the_papers_ten_voxels(self):
        assert MIN_LESION_VOXELS == 10
        mask = np.zeros((6, 6, 10), bool)
        mask[0, 0, :9] = True  # nine voxels: never enough
        assert valid_patch_starts(mask, (3, 3, 10)).size == 0
        mask[0, 1, 0] = True  # ten voxels, all inside the patches starting at z = 0 and y = 0
        starts = valid_patch_starts(mask, (3, 3, 10))
        assert starts.tolist() == [0]

    def test_zero_threshold_allows_every_position(self):
        mask = np.zeros((5, 5, 5), bool)
        assert valid_patch_starts(mask, (2, 2, 2), 0).size == 4**3


class TestPatchSampler:
    def test_every_patch_holds_ten_lesion_voxels_and_subjects_are_balanced(self):
        subjects = [
            _subject("a", lesion_boxes=(((1, 4), (1, 4), (1, 4)),)),
            _subject("b", lesion_boxes=(((6, 9), (5, 8), (6, 9)), ((0, 2), (0, 2), (0, 2)))),
        ]
        sampler = PatchSampler(subjects, (6, 6, 6), patches_per_subject=5, seed=1)
        specs = sampler.epoch(0)
        assert len(specs) == len(sampler) == 10
        assert [s.subject for s in specs].count(0) == [s.subject for s in specs].count(1) == 5
        for spec in specs:
            image, mask = sampler.extract(spec)
            assert image.shape == (2, 6, 6, 6) and mask.shape == (6, 6, 6)
            assert mask.dtype == np.float32 and mask.sum() >= MIN_LESION_VOXELS

    def test_extracted_patch_is_the_augmented_window(self):
        subject = _subject()
        sampler = PatchSampler([subject], (4, 4, 4), patches_per_subject=20, augment="paper", seed=4)
        specs = sampler.epoch(0)
        assert {s.variant for s in specs} <= {"identity", "rot180_yx", "rot180_zx", "rot180_zy"}
        assert len({s.variant for s in specs}) > 1
        for spec in specs:
            window = tuple(slice(s, s + 4) for s in spec.start)
            image, mask = sampler.extract(spec)
            np.testing.assert_array_equal(augment(image, spec.variant), subject.image[(slice(None), *window)])
            np.testing.assert_array_equal(augment(mask, spec.variant), subject.mask[window])

    def test_same_seed_and_epoch_give_the_same_patches(self):
        subjects = [_subject()]
        first = PatchSampler(subjects, (4, 4, 4), 6, seed=7)
        second = PatchSampler(subjects, (4, 4, 4), 6, seed=7)
        assert first.epoch(3) == second.epoch(3)
        assert first.epoch(3) != first.epoch(4)

    def test_subject_without_enough_lesion_is_skipped_with_a_warning(self):
        few = _subject("few", lesion_boxes=(((0, 1), (0, 1), (0, 9)),))  # nine voxels
        many = _subject("many")
        with pytest.warns(UserWarning, match="skipping 1 subject.*few"):
            sampler = PatchSampler([few, many], (4, 4, 4), 3)
        assert sampler.eligible == [1]
        assert {s.subject for s in sampler.epoch(0)} == {1}

    def test_no_eligible_subject_is_an_error(self):
        empty = _subject("empty", lesion_boxes=())
        with pytest.raises(InvalidInputError, match="no training subject.*empty"):
            PatchSampler([empty], (4, 4, 4), 3)

    def test_zero_threshold_samples_subjects_without_lesions(self):
        empty = _subject("empty", lesion_boxes=())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sampler = PatchSampler([empty], (4, 4, 4), 3, min_lesion_voxels=0)
        assert len(sampler.epoch(0)) == 3

    @pytest.mark.parametrize(
        ("kwargs", "message"), [({"augment": "spin"}, "unknown augmentation"), ({"patches_per_subject": 0}, ">= 1")]
    )
    def test_bad_options(self, kwargs, message):
        options = {"patches_per_subject": 2, **kwargs}
        with pytest.raises(InvalidInputError, match=message):
            PatchSampler([_subject()], (4, 4, 4), **options)


class TestAugment:
    @pytest.mark.parametrize("variant", ["identity", "rot180_yx", "rot180_zx", "rot180_zy"])
    def test_paper_variants_are_involutions(self, variant):
        volume = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
        np.testing.assert_array_equal(augment(augment(volume, variant), variant), volume)

    def test_axial_rotation_is_a_180_degree_turn_in_the_yx_plane(self):
        volume = np.arange(3 * 4 * 5).reshape(3, 4, 5)
        np.testing.assert_array_equal(augment(volume, "rot180_yx"), np.rot90(volume, 2, axes=(1, 2)))
        assert augment(volume, "rot180_yx").flags.c_contiguous


class TestSubjects:
    def test_subject_from_arrays_normalises_and_binarises(self):
        image = np.random.default_rng(0).normal(100, 20, size=(2, 8, 8, 8)).astype(np.float32)
        mask = np.zeros((8, 8, 8), np.uint8)
        mask[2:4, 2:4, 2:4] = 2
        subject = subject_from_arrays(image, mask, (1.0, 1.0, 2.0), "x")
        assert subject.mask.dtype == bool and subject.mask.sum() == 8
        assert abs(float(subject.image.mean())) < 5 and subject.spacing == (1.0, 1.0, 2.0)

    def test_subject_from_arrays_rejects_mismatched_grids(self):
        with pytest.raises(InvalidInputError, match="same grid"):
            subject_from_arrays(np.zeros((1, 4, 4, 4)), np.zeros((4, 4, 5)), name="bad")

    def test_pad_to_patch_grows_small_volumes_only(self):
        subject = _subject(shape=(3, 6, 2), lesion_boxes=(((0, 3), (0, 3), (0, 2)),))
        padded = pad_to_patch(subject, (4, 4, 4))
        assert padded.mask.shape == (4, 6, 4) and padded.image.shape == (2, 4, 6, 4)
        assert padded.mask.sum() == subject.mask.sum()
        assert padded.image[0, 3, 0, 0] == subject.image[0].min()
        assert pad_to_patch(subject, (2, 2, 2)) is subject


def test_zero_threshold_still_refuses_a_patch_larger_than_the_volume():
    with pytest.raises(InvalidInputError, match="at least as large as the patch"):
        PatchSampler([_subject(shape=(3, 10, 10))], (4, 4, 4), 2, min_lesion_voxels=0)
