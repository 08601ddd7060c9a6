"""Modalities assigned by hand to scanner-named files, remembered per folder and used by the subject reader."""

import json

import numpy as np
import pytest
from conftest import write_nifti

from napari_lesionseg.data.assignments import assign_roles, assigned_roles, assignments_path
from napari_lesionseg.data.naming import find_subject_files
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.errors import InvalidInputError


@pytest.fixture
def scanner_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    folder = tmp_path / "exam-0042"
    rng = np.random.default_rng(0)
    for name in ("301_3D_FLAIR_SAG.nii.gz", "401_T1_MPRAGE.nii.gz"):
        write_nifti(folder / name, rng.random((10, 12, 8)).astype(np.float32) * 100)
    return folder


def test_scanner_names_are_refused_until_assigned_then_read_as_those_modalities(scanner_folder):
    with pytest.raises(InvalidInputError, match="assign the files' modalities in napari's Subject dock"):
        find_subject_files(scanner_folder)
    assign_roles(scanner_folder, {"301_3D_FLAIR_SAG.nii.gz": "FLAIR", "401_T1_MPRAGE.nii.gz": "T1w"})
    images, mask = find_subject_files(scanner_folder)
    assert images == {"FLAIR": scanner_folder / "301_3D_FLAIR_SAG.nii.gz", "T1w": scanner_folder / "401_T1_MPRAGE.nii.gz"}
    assert mask is None
    subject = load_subject(scanner_folder)
    assert subject.name == "exam-0042" and subject.modalities == ("FLAIR", "T1w")
    stored = json.loads(assignments_path().read_text())
    assert stored[str(scanner_folder.resolve())]["301_3D_FLAIR_SAG.nii.gz"] == "FLAIR"


def test_bad_assignments_are_refused_and_nothing_is_remembered(scanner_folder):
    with pytest.raises(InvalidInputError, match="FLAIR assigned to more than one file"):
        assign_roles(scanner_folder, {"301_3D_FLAIR_SAG.nii.gz": "FLAIR", "401_T1_MPRAGE.nii.gz": "FLAIR"})
    with pytest.raises(InvalidInputError, match="no such file"):
        assign_roles(scanner_folder, {"missing.nii.gz": "T2w"})
    with pytest.raises(InvalidInputError, match="unknown role"):
        assign_roles(scanner_folder, {"401_T1_MPRAGE.nii.gz": "T3"})
    assert assigned_roles(scanner_folder) == {}
