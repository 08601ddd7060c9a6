"""Corrected masks on disk: file names, where they go, atomic writes on the source grid, the reference
never overwritten, fallback to the per-user folder, finding and restoring an autosave."""

from __future__ import annotations

import os
import time

import nibabel as nib
import numpy as np
import pytest

from napari_lesionseg.data.corrections import (
    corrected_mask_path,
    find_corrected_mask,
    keep_previous,
    load_corrected_mask,
    save_corrected_mask,
    user_corrections_dir,
)
from napari_lesionseg.data.naming import CORRECTED_SUFFIX, find_subject_files, subject_of
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.errors import InvalidInputError


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sub-01_FLAIR.nii.gz", "sub-01"),
        ("sub-01_ses-2_t1w.nii", "sub-01_ses-2"),
        ("sub-01_label-lesion_mask.nii.gz", "sub-01"),
        (f"sub-01_{CORRECTED_SUFFIX}.nii.gz", "sub-01"),
        ("FLAIR.nii.gz", "patient"),
        ("notes.nii.gz", None),
    ],
)
def test_subject_of_reads_the_subject_name(tmp_path, name, expected):
    found = subject_of(tmp_path / "patient" / name)
    assert (found[1] if found else None) == expected
    if found:
        assert found[0] == tmp_path / "patient"


def test_path_is_beside_the_subject_or_in_the_user_folder(tmp_path, home):
    folder = tmp_path / "sub-01"
    folder.mkdir()
    assert corrected_mask_path(folder, "sub-01") == folder / f"sub-01_{CORRECTED_SUFFIX}.nii.gz"
    elsewhere = corrected_mask_path(tmp_path / "gone", "sub-01")
    assert elsewhere.parent.parent == user_corrections_dir() and str(elsewhere).startswith(str(home))


def test_save_and_load_on_the_source_grid(make_subject):
    folder = make_subject(axcodes="LPS")
    subject = load_subject(folder)
    mask = np.zeros(subject.geometry.shape, np.uint16)
    mask[2:5, 3:6, 4:7] = 2  # any nonzero label is lesion
    path = save_corrected_mask(mask, subject.geometry, corrected_mask_path(folder, subject.name))
    written, source = nib.load(path), nib.load(next(folder.glob("*_FLAIR.nii.gz")))
    assert np.array_equal(written.affine, source.affine) and written.get_data_dtype() == np.uint8
    assert np.array_equal(load_corrected_mask(path, subject.geometry.shape), mask != 0)
    assert find_subject_files(folder)[1].name == "sub-01_label-lesion_mask.nii.gz"  # not taken for the reference
    assert find_corrected_mask(folder, subject.name) == path


def test_the_reference_is_never_overwritten(make_subject, tmp_path):
    folder = make_subject()
    subject = load_subject(folder)
    reference = next(folder.glob("*_label-lesion_mask.nii.gz"))
    before = reference.read_bytes()
    mask = np.ones(subject.geometry.shape, np.uint8)
    with pytest.raises(InvalidInputError, match="named like a reference mask"):
        save_corrected_mask(mask, subject.geometry, reference)
    expert = tmp_path / "expert.nii.gz"
    expert.write_bytes(before)
    with pytest.raises(InvalidInputError, match="reference mask under review"):
        save_corrected_mask(mask, subject.geometry, expert, protected=[expert])
    assert reference.read_bytes() == before and expert.read_bytes() == before


def test_unwritable_target_falls_back_to_the_user_folder(make_subject, tmp_path):
    folder = make_subject()
    subject = load_subject(folder)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    mask = np.zeros(subject.geometry.shape, np.uint8)
    with pytest.raises(OSError):
        save_corrected_mask(mask, subject.geometry, blocker / "x.nii.gz")
    written = save_corrected_mask(mask, subject.geometry, blocker / "x.nii.gz", fallback=(folder, "sub-01"))
    assert written.parent.parent == user_corrections_dir() and written.is_file()
    assert find_corrected_mask(folder, "sub-01") == written


def test_find_takes_the_newest_and_keep_previous_moves_one_aside(make_subject, tmp_path):
    folder = make_subject()
    subject = load_subject(folder)
    assert find_corrected_mask(folder, "sub-01") is None
    mask = np.zeros(subject.geometry.shape, np.uint8)
    beside = save_corrected_mask(mask, subject.geometry, corrected_mask_path(folder, "sub-01"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    user = save_corrected_mask(mask + 1, subject.geometry, blocker / "x.nii.gz", fallback=(folder, "sub-01"))
    os.utime(beside, (time.time() - 100, time.time() - 100))
    assert find_corrected_mask(folder, "sub-01") == user
    previous = keep_previous(beside)
    assert previous.name == f"sub-01_{CORRECTED_SUFFIX}_previous.nii.gz"
    assert beside.read_bytes() == previous.read_bytes()  # a copy: the newest never disappears
    beside.write_bytes(b"garbage")
    assert keep_previous(beside) is None  # an unreadable file never replaces a good previous one
    assert np.array_equal(load_corrected_mask(previous), mask)


def test_restoring_onto_another_grid_is_refused(make_subject):
    folder = make_subject()
    subject = load_subject(folder)
    path = save_corrected_mask(np.zeros(subject.geometry.shape), subject.geometry, corrected_mask_path(folder, "sub-01"))
    with pytest.raises(InvalidInputError, match="belongs to another grid"):
        load_corrected_mask(path, (1, 2, 3))
