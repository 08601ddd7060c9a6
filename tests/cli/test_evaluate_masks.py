"""`lesionseg evaluate` refuses what is not a binary mask or a probability threshold, and merges
labels only when asked, saying which."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _faults import assert_untouched, snapshot
from conftest import write_nifti

from napari_lesionseg.cli import main

SHAPE = (12, 10, 8)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    gt = (rng.random(SHAPE) < 0.1).astype(np.uint8)
    labelled = gt.copy()
    labelled[:3][gt[:3] == 1] = 2  # a segmentation with a second label (say, enhancing lesions)
    labelled[-2:][gt[-2:] == 1] = 5
    return {
        "gt": write_nifti(tmp_path / "gt_label-lesion_mask.nii.gz", gt),
        "labelled": write_nifti(tmp_path / "labels_mask.nii.gz", labelled),
        "prob": write_nifti(tmp_path / "prob.nii.gz", gt * np.float32(0.8)),
    }


def _run(capsys, *argv):
    code = main(["evaluate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_labels_other_than_0_and_1_are_refused(files, tmp_path, capsys):
    before = snapshot(tmp_path)
    for pred, gt in ((files["labelled"], files["gt"]), (files["gt"], files["labelled"])):
        code, _, err = _run(capsys, "--pred", pred, "--gt", gt)
        assert code == 2 and len(err) == 1 and f"{files['labelled']}: holds label(s) 2, 5 besides 0 and 1" in err[0]
        assert "--merge-labels" in err[0]
    assert_untouched(before, tmp_path)


def test_merge_labels_says_which_labels_it_merged(files, tmp_path, capsys):
    before = snapshot(tmp_path)
    code, out, err = _run(capsys, "--pred", files["labelled"], "--gt", files["gt"], "--merge-labels", "--json")
    assert code == 0 and json.loads(out)["dsc"] == 1.0  # every nonzero label counted as lesion
    assert err == [f"lesionseg evaluate: warning: {files['labelled']}: merged label(s) 2, 5 into lesion (--merge-labels)"]
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("threshold", ["7", "-0.1", "nan"])
def test_thresholds_outside_0_1_are_refused(files, tmp_path, capsys, threshold):
    before = snapshot(tmp_path)
    code, _, err = _run(capsys, "--pred", files["prob"], "--gt", files["gt"], "--threshold", threshold)
    assert code == 2 and len(err) == 1 and f"--threshold {threshold}" in err[0] and "[0, 1]" in err[0]
    assert_untouched(before, tmp_path)
