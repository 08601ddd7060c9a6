"""`lesionseg sample`: writes N phantom subjects and reports each one."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_lesionseg.cli import main
from napari_lesionseg.constants import CORE_MODALITIES, MASK_SUFFIX


def test_writes_n_subjects_and_prints_one_line_each(tmp_path, capsys):
    out = tmp_path / "subjects"
    status = main(["sample", str(out), "--n", "2", "--seed", "21", "--spacing", "6", "--t1c", "--dtype", "int16"])
    assert status == 0
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert [f.name for f in folders] == ["sub-phantom001", "sub-phantom002"]
    for folder in folders:
        expected = {f"{folder.name}_{m}.nii.gz" for m in (*CORE_MODALITIES, "T1c")}
        expected.add(f"{folder.name}_{MASK_SUFFIX}.nii.gz")
        assert {p.name for p in folder.iterdir()} == expected
        flair = nib.load(folder / f"{folder.name}_FLAIR.nii.gz")
        assert flair.get_data_dtype() == np.int16
        assert np.allclose(flair.header.get_zooms(), 6.0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(str(folders[0])) and "seed 21" in lines[0] and "mL" in lines[0]
    assert "seed 22" in lines[1] and "lesions" in lines[1]


def test_bad_spacing_is_a_one_line_error(tmp_path, capsys):
    status = main(["sample", str(tmp_path / "out"), "--spacing", "0.1"])
    assert status == 2
    err = capsys.readouterr().err
    assert "spacing" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--n", "--seed", "--spacing", "--t1c", "--load", "--dtype"):
        assert option in help_text


def test_the_training_generator_writes_subject_folders_the_trainer_reads(tmp_path, capsys):
    from napari_lesionseg.data.subject import load_subject

    out = tmp_path / "train"
    assert main(["sample", str(out), "--n", "2", "--seed", "30", "--spacing", "4", "--generator", "training",
                 "--modalities", "FLAIR,T1w"]) == 0  # fmt: skip
    for folder in sorted(out.iterdir()):
        subject = load_subject(folder)
        assert set(subject.modalities) == {"FLAIR", "T1w"} and subject.mask is not None
        assert np.allclose(subject.geometry.spacing, 4.0)
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["sample", str(tmp_path / "x"), "--generator", "training", "--skull-strip"]) == 2
    assert "--skull-strip: the training generator draws these per subject" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "y"), "--modalities", "FLAIR"]) == 2
    assert "--modalities needs --generator training" in capsys.readouterr().err


def test_another_phantom_is_not_written_over_without_overwrite(tmp_path, capsys):
    out = tmp_path / "subjects"
    assert main(["sample", str(out), "--seed", "21", "--spacing", "6"]) == 0
    flair = out / "sub-phantom001" / "sub-phantom001_FLAIR.nii.gz"
    before = flair.read_bytes()
    assert main(["sample", str(out), "--seed", "21", "--spacing", "6"]) == 0  # the same phantom again: byte-identical
    assert flair.read_bytes() == before
    capsys.readouterr()
    assert main(["sample", str(out), "--seed", "1", "--spacing", "6"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "holds another phantom (seed 21, 6 mm) where this run writes seed 1" in line
    assert flair.read_bytes() == before
    assert main(["sample", str(out), "--seed", "1", "--spacing", "6", "--overwrite"]) == 0
    assert flair.read_bytes() != before
