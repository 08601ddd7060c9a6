"""Mistakes in how a command is called: one line on stderr, exit 2, nothing computed, or a plain note."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import write_subject

from napari_lesionseg.cli import main

SHAPE = (14, 12, 10)


def _error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "argv",
    [["predict", "x", "--fusion", "bogus"], ["predict"], ["evaluate", "--threshold", "high"], ["nosuchcommand"]],
)
def test_a_bad_option_is_one_line_not_the_usage_block(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    lines = _error_lines(capsys)
    assert stop.value.code == 2 and len(lines) == 1, lines
    assert ": error: " in lines[0] and lines[0].endswith("--help)")


@pytest.mark.parametrize(("argv", "hinted"), [(["predict", "x", "--beta", "1.5", "--shard", "-1/2"], True),
                                             (["predict", "x", "--beta", "1.5", "--shard"], False),
                                             (["predict", "x", "--threshold", "-0.5", "--shard"], False)])  # fmt: skip
def test_a_value_that_starts_with_a_dash_is_shown_how_to_pass(capsys, argv, hinted):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    (line,) = _error_lines(capsys)
    assert stop.value.code == 2 and "argument --shard: expected one argument" in line
    assert ("a value that starts with '-' is written --shard=VALUE" in line) is hinted


def test_a_negative_shard_written_with_equals_reaches_the_shard_check(tmp_path, capsys):
    folder = write_subject(tmp_path, shape=SHAPE)
    code = main(["predict", str(folder), "--beta", "1.5", "--mask-out", str(tmp_path / "m.nii.gz"), "--shard=-1/2"])
    (line,) = _error_lines(capsys)
    assert code == 2 and line.endswith("--shard -1/2: K must be in 0..N-1")


def test_a_modality_file_that_does_not_exist_is_named_as_missing(tmp_path, capsys):
    folder = write_subject(tmp_path, shape=SHAPE)
    missing = tmp_path / "gone_T1w.nii.gz"
    code = main(["predict", f"FLAIR={folder / 'sub-01_FLAIR.nii.gz'}", f"T1w={missing}", "--beta", "1.5",
                 "--mask-out", str(tmp_path / "m.nii.gz"), "--quiet"])  # fmt: skip
    (line,) = _error_lines(capsys)
    assert code == 2 and line.endswith(f"{missing}: no such file (given as T1w)")


@pytest.mark.parametrize("how", ["same file", "copy"])
def test_one_scan_given_as_two_modalities_is_refused(tmp_path, capsys, how):
    folder = write_subject(tmp_path, shape=SHAPE, modalities=("FLAIR", "T2w"))
    flair = folder / "sub-01_FLAIR.nii.gz"
    second = flair if how == "same file" else shutil.copy(flair, tmp_path / "copied_T1w.nii.gz")
    out = tmp_path / "m.nii.gz"
    code = main(["predict", f"FLAIR={flair}", f"T1w={second}", "--beta", "1.5", "--mask-out", str(out), "--quiet"])
    (line,) = _error_lines(capsys)
    assert code == 2 and f"its voxels are those of {flair} (FLAIR): one scan given as both FLAIR and T1w" in line
    assert not out.exists()


def test_a_shard_without_subjects_says_so(tmp_path, capsys):
    folder = write_subject(tmp_path, shape=SHAPE)
    out = tmp_path / "m.nii.gz"
    code = main(["predict", str(folder), "--beta", "1.5", "--mask-out", str(out), "--shard", "1/2", "--quiet"])
    (line,) = _error_lines(capsys)
    assert code == 0 and line == "lesionseg predict: shard 1/2 holds no subject (1 given); nothing to do"
    assert not Path(out).exists()
