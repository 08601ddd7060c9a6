"""The output-path policy on real files: inputs and earlier results are never destroyed, faults are
reported before any work, and nothing is left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from _faults import assert_untouched, fail_fsync, make_read_only, snapshot, temp_files
from conftest import write_subject

from napari_lesionseg.data.outputs import (
    Output,
    batch_outputs,
    check_outputs,
    is_own_output,
)
from napari_lesionseg.data.volumes import load_volume, save_volume
from napari_lesionseg.errors import InvalidInputError


@pytest.fixture
def subject(tmp_path: Path) -> Path:
    return write_subject(tmp_path / "data")


def _inputs(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def test_an_output_is_never_an_input_directly_through_a_link_or_a_hard_link(subject, tmp_path):
    flair = subject / "sub-01_FLAIR.nii.gz"
    before = snapshot(subject)
    (tmp_path / "link.nii.gz").symlink_to(flair)
    os.link(subject / "sub-01_T1w.nii.gz", tmp_path / "hard.nii.gz")
    (tmp_path / "linked-folder").symlink_to(subject)
    for path in (flair, tmp_path / "link.nii.gz", tmp_path / "hard.nii.gz", tmp_path / "linked-folder" / flair.name):
        with pytest.raises(InvalidInputError, match="inputs are never overwritten") as caught:
            check_outputs([Output(path, "--mask-out")], _inputs(subject), overwrite=True)
        assert str(path) in str(caught.value)
    assert_untouched(before, tmp_path)


def test_two_outputs_of_one_run_never_share_a_path(tmp_path):
    out = tmp_path / "out" / "a.nii.gz"
    with pytest.raises(InvalidInputError, match="--prob-out and --mask-out both write"):
        check_outputs([Output(out, "--prob-out"), Output(tmp_path / "out" / ".." / "out" / "a.nii.gz", "--mask-out")])
    assert not (tmp_path / "out").exists()  # refused before any folder was made


@pytest.mark.parametrize("name", ["sub-01_FLAIR.nii.gz", "x_t1w.nii", "sub-01_label-lesion_mask.nii.gz", "sub-01_label-lesion_corrected.nii.gz"])
def test_outputs_are_never_named_like_subject_files(tmp_path, name):
    with pytest.raises(InvalidInputError, match="named like a subject's"):
        check_outputs([Output(tmp_path / "sub-01" / name, "--mask-out")])
    assert not (tmp_path / "sub-01").exists()


def test_existing_files_are_replaced_only_if_ours_or_with_overwrite(subject, tmp_path):
    foreign = tmp_path / "out" / "mask.nii.gz"
    foreign.parent.mkdir()
    foreign.write_bytes((subject / "sub-01_FLAIR.nii.gz").read_bytes())  # someone else's NIfTI
    before = snapshot(subject, foreign)
    with pytest.raises(InvalidInputError, match="not written by napari-lesionseg; pass --overwrite"):
        check_outputs([Output(foreign, "--mask-out")], _inputs(subject))
    with pytest.raises(InvalidInputError, match=r"Save as .*not written by napari-lesionseg; choose another path$"):
        check_outputs([Output(foreign, "Save as")], _inputs(subject))  # a dock has no --overwrite to offer
    check_outputs([Output(foreign, "--mask-out")], _inputs(subject), overwrite=True)
    flair = load_volume(subject / "sub-01_FLAIR.nii.gz")
    ours = save_volume(flair.data > 0, flair.geometry, tmp_path / "out" / "ours.nii.gz")
    assert is_own_output(ours) and not is_own_output(foreign)
    check_outputs([Output(ours, "--mask-out")], _inputs(subject))  # an earlier result of ours: fine
    csv = tmp_path / "out" / "metrics.csv"
    csv.write_text("subject,dsc\nsub-01,0.5\n")
    assert is_own_output(csv, "csv", "subject,dsc") and not is_own_output(csv, "csv", "subject,dsc,notes")
    assert_untouched(before, tmp_path)


def test_folders_are_created_and_a_path_under_a_file_is_refused_up_front(tmp_path):
    deep = tmp_path / "new" / "deeper" / "mask.nii.gz"
    check_outputs([Output(deep, "--mask-out")])
    assert deep.parent.is_dir() and temp_files(tmp_path) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    with pytest.raises(InvalidInputError, match="cannot create the folder") as caught:
        check_outputs([Output(blocker / "sub" / "mask.nii.gz", "--mask-out")])
    assert str(blocker) in str(caught.value) and blocker.read_text() == "keep me"
    with pytest.raises(InvalidInputError, match="is a folder"):
        check_outputs([Output(tmp_path / "new", "--csv", "csv")])


def test_a_read_only_folder_is_reported_before_any_work(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    make_read_only(folder, monkeypatch)
    with pytest.raises(InvalidInputError, match=r"cannot write in .*ro") as caught:
        check_outputs([Output(folder / "mask.nii.gz", "--mask-out")])
    assert "read-only" in str(caught.value) or "permission" in str(caught.value)
    assert list(folder.iterdir()) == []


def test_a_full_disk_is_reported_before_any_work(tmp_path, monkeypatch):
    failed = fail_fsync(monkeypatch, lambda path: "lesionseg-probe" in path)
    with pytest.raises(InvalidInputError, match="no space left"):
        check_outputs([Output(tmp_path / "out" / "mask.nii.gz", "--mask-out")])
    assert failed and temp_files(tmp_path) == []


def test_an_interrupted_write_keeps_the_earlier_result(subject, tmp_path, monkeypatch):
    flair = load_volume(subject / "sub-01_FLAIR.nii.gz")
    target = save_volume(flair.data > 100, flair.geometry, tmp_path / "out" / "mask.nii.gz")
    before = snapshot(subject, target)
    fail_fsync(monkeypatch, lambda path: ".tmp" in path, errno.ENOSPC)
    with pytest.raises(OSError, match="No space left") as caught:
        save_volume(np.zeros_like(flair.data), flair.geometry, target)
    assert caught.value.filename == str(target)  # the file the user asked for, not the temporary one
    assert_untouched(before, tmp_path)


def test_batch_names_that_collide_stop_the_run_naming_both_subjects(tmp_path):
    subjects = [("sub-01", tmp_path / "visit1"), ("sub-02", tmp_path / "visit1b"), ("sub-01", tmp_path / "visit2")]
    with pytest.raises(InvalidInputError) as caught:
        batch_outputs(str(tmp_path / "out" / "{subject}_mask.nii.gz"), subjects, "--mask-out")
    message = str(caught.value)
    assert "visit1 and" in message and "visit2" in message and "sub-01_mask.nii.gz" in message
    unique = batch_outputs(str(tmp_path / "out" / "{subject}_mask.nii.gz"), subjects[:2], "--mask-out")
    assert [o.path.name for o in unique] == ["sub-01_mask.nii.gz", "sub-02_mask.nii.gz"]
