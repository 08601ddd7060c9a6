"""No command destroys an input or an earlier result, and output faults are caught before the work.

Real subjects, a tiny real checkpoint; each test checks the input files are byte-identical
afterwards and that no temporary file is left. `load_checkpoint` is made to fail where a test
claims the refusal comes before any work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _faults import assert_untouched, fail_fsync, make_read_only, snapshot, temp_files
from conftest import TINY_FCDENSENET, write_nifti, write_subject

from napari_lesionseg.cli import main
from napari_lesionseg.constants import CORE_MODALITIES
from napari_lesionseg.engine import predict as engine_predict

SHAPE = (14, 12, 10)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    from napari_lesionseg.engine.checkpoints import CheckpointMetadata, save_checkpoint
    from napari_lesionseg.models import build_model, model_config

    config = model_config("compact", in_channels=len(CORE_MODALITIES), **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        name="tiny", model=config, loss="fbeta", beta=1.5, modalities=list(CORE_MODALITIES), patch_size=[8, 8, 8],
        spacing=[1.0, 1.0, 1.0],  # its (synthetic 1 mm) data's: checkpoints written today record it
    )
    return save_checkpoint(tmp_path / "ckpt" / "tiny.pt", build_model(config), metadata)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the checkpoint is loaded: the refusal must come first."""

    def tripwire(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the outputs were checked")

    monkeypatch.setattr("napari_lesionseg.engine.checkpoints.load_checkpoint", tripwire)


def _run(capsys, *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lesionseg {command}: error: "), err
    return lines[0]


def _predict(*args: object) -> list[object]:
    return ["predict", *args, "--device", "cpu", "--quiet", "--no-tta"]


class TestPredict:
    def test_mask_out_onto_the_flair_is_refused_before_any_work(self, tmp_path, checkpoint, capsys, no_work):
        folder = write_subject(tmp_path / "data", shape=SHAPE)
        before = snapshot(folder, checkpoint)
        code, err = _run(capsys, *_predict(folder, "--checkpoint", checkpoint, "--mask-out", folder / "sub-01_FLAIR.nii.gz"))
        assert code == 2 and "is the input" in _one_error_line(err, "predict")
        assert_untouched(before, tmp_path)

    def test_prob_and_mask_on_one_path_is_refused(self, tmp_path, checkpoint, capsys, no_work):
        folder = write_subject(tmp_path / "data", shape=SHAPE)
        before = snapshot(folder)
        out = tmp_path / "out" / "x.nii.gz"
        code, err = _run(capsys, *_predict(folder, "--checkpoint", checkpoint, "--prob-out", out, "--mask-out", out))
        assert code == 2 and "--prob-out of sub-01" in _one_error_line(err, "predict") and "both write" in err
        assert not out.exists()
        assert_untouched(before, tmp_path)

    def test_an_output_named_like_a_subject_file_is_refused(self, tmp_path, checkpoint, capsys, no_work):
        folder = write_subject(tmp_path / "data", shape=SHAPE)
        before = snapshot(folder)
        out = tmp_path / "data" / "sub-02" / "sub-02_label-lesion_mask.nii.gz"
        code, err = _run(capsys, *_predict(folder, "--checkpoint", checkpoint, "--mask-out", out))
        assert code == 2 and "named like a subject's label-lesion_mask" in _one_error_line(err, "predict")
        assert_untouched(before, tmp_path)

    def test_two_visits_of_one_subject_stop_the_batch_naming_both(self, tmp_path, checkpoint, capsys, no_work):
        visit1 = write_subject(tmp_path / "visit1", shape=SHAPE)
        visit2 = write_subject(tmp_path / "visit2", shape=SHAPE, seed=3)
        before = snapshot(visit1, visit2)
        template = tmp_path / "out" / "{subject}_mask.nii.gz"
        code, err = _run(capsys, *_predict(tmp_path / "visit1", tmp_path / "visit2", "--checkpoint", checkpoint, "--mask-out", template))
        line = _one_error_line(err, "predict")
        assert code == 2 and str(visit1) in line and str(visit2) in line and "nothing was predicted" in line
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
        assert_untouched(before, tmp_path)

    def test_foreign_files_need_overwrite_and_our_own_results_are_replaced(self, tmp_path, checkpoint, capsys):
        folder = write_subject(tmp_path / "data", shape=SHAPE)
        foreign = tmp_path / "out" / "mask.nii.gz"
        write_nifti(foreign, np.full(SHAPE, 7, np.int16))
        before = snapshot(folder, foreign)
        code, err = _run(capsys, *_predict(folder, "--checkpoint", checkpoint, "--mask-out", foreign))
        assert code == 2 and "pass --overwrite" in _one_error_line(err, "predict")
        assert_untouched(before, tmp_path)
        assert main([str(a) for a in _predict(folder, "--checkpoint", checkpoint, "--mask-out", foreign, "--overwrite")]) == 0
        assert main([str(a) for a in _predict(folder, "--checkpoint", checkpoint, "--mask-out", foreign)]) == 0  # ours now
        assert_untouched(snapshot(folder), tmp_path)

    def test_a_write_protected_earlier_result_is_kept_without_overwrite(self, tmp_path, checkpoint, capsys):
        folder = write_subject(tmp_path / "data", shape=SHAPE)
        earlier = tmp_path / "out" / "mask.nii.gz"
        assert main([str(a) for a in _predict(folder, "--checkpoint", checkpoint, "--mask-out", earlier)]) == 0
        earlier.chmod(0o444)  # its owner protects it
        before = snapshot(earlier)
        capsys.readouterr()
        code, err = _run(capsys, *_predict(folder, "--checkpoint", checkpoint, "--mask-out", earlier, "--threshold", "0.9"))
        assert code == 2 and "is read-only (write-protected); pass --overwrite" in _one_error_line(err, "predict")
        assert_untouched(before, tmp_path)
        assert main([str(a) for a in _predict(folder, "--checkpoint", checkpoint, "--mask-out", earlier, "--overwrite")]) == 0

    @pytest.mark.parametrize("given", ["sub-09", "sub-09_FLAIR.nii.gz"])
    def test_a_subject_path_that_does_not_exist_is_reported_as_such(self, tmp_path, checkpoint, capsys, no_work, given):
        code, err = _run(capsys, *_predict(tmp_path / given, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz"))
        assert code == 2 and _one_error_line(err, "predict").endswith(f"{tmp_path / given}: no such file or folder")

    def test_a_read_only_output_folder_is_one_line_before_any_work(self, tmp_path, checkpoint, capsys, monkeypatch, no_work):
        folder = write_subject(tmp_path / "data", shape=SHAPE)
        before = snapshot(folder)
        make_read_only(tmp_path / "ro", monkeypatch)
        code, err = _run(capsys, *_predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "ro" / "m.nii.gz"))
        assert code == 2 and f"cannot write in {tmp_path / 'ro'}" in _one_error_line(err, "predict")
        assert_untouched(before, tmp_path)

    def test_a_disk_that_fills_during_the_write_keeps_the_earlier_results(self, tmp_path, checkpoint, capsys, monkeypatch):
        monkeypatch.setattr(engine_predict, "SMALL_FIELD_ML", 0.0)  # a tiny volume's note is not what this counts
        folder = write_subject(tmp_path / "data", shape=SHAPE)
        out = tmp_path / "out"
        args = _predict(folder, "--checkpoint", checkpoint, "--prob-out", out / "p.nii.gz", "--mask-out", out / "m.nii.gz")
        assert main([str(a) for a in args]) == 0
        before = snapshot(folder, out)
        failed = fail_fsync(monkeypatch, lambda path: ".m.nii.gz." in path)  # the mask's temporary file
        code, err = _run(capsys, *args, "--threshold", "0.9")
        assert failed and code == 2
        assert _one_error_line(err, "predict").endswith(f"{out / 'm.nii.gz'}: no space left on the disk")
        assert_untouched(before, tmp_path)  # neither output replaced: they are renamed in together


class TestEvaluate:
    def _case(self, tmp_path: Path) -> dict[str, Path]:
        rng = np.random.default_rng(0)
        gt = (rng.random(SHAPE) < 0.1).astype(np.uint8)
        return {
            "pred": write_nifti(tmp_path / "out" / "sub-01_mask.nii.gz", np.roll(gt, 1, axis=0)),
            "gt": write_nifti(tmp_path / "data" / "sub-01" / "sub-01_label-lesion_mask.nii.gz", gt),
        }

    def test_lesions_onto_the_reference_is_refused(self, tmp_path, capsys):
        files = self._case(tmp_path)
        before = snapshot(tmp_path)
        code, err = _run(capsys, "evaluate", "--pred", files["pred"], "--gt", files["gt"], "--lesions", files["gt"])
        assert code == 2 and "is the input" in _one_error_line(err, "evaluate")
        assert_untouched(before, tmp_path)

    def test_folder_csv_onto_a_prediction_is_refused(self, tmp_path, capsys):
        files = self._case(tmp_path)
        before = snapshot(tmp_path)
        code, err = _run(capsys, "evaluate", "--pred-dir", tmp_path / "out", "--gt-dir", tmp_path / "data", "--csv", files["pred"])
        assert code == 2 and "is the input" in _one_error_line(err, "evaluate")
        assert_untouched(before, tmp_path)

    def test_csv_on_a_read_only_folder_is_one_line(self, tmp_path, capsys, monkeypatch):
        self._case(tmp_path)
        before = snapshot(tmp_path)
        make_read_only(tmp_path / "ro", monkeypatch)
        code, err = _run(capsys, "evaluate", "--pred-dir", tmp_path / "out", "--gt-dir", tmp_path / "data", "--csv", tmp_path / "ro" / "m.csv")
        assert code == 2 and "cannot write in" in _one_error_line(err, "evaluate")
        assert_untouched(before, tmp_path)

    def test_an_earlier_csv_of_ours_is_replaced_a_foreign_one_is_not(self, tmp_path, capsys):
        self._case(tmp_path)
        csv = tmp_path / "metrics.csv"
        args = ["evaluate", "--pred-dir", tmp_path / "out", "--gt-dir", tmp_path / "data", "--csv", csv, "--quiet"]
        assert _run(capsys, *args)[0] == 0
        assert _run(capsys, *args)[0] == 0
        csv.write_text("name,score\n")
        before = snapshot(tmp_path)
        code, err = _run(capsys, *args)
        assert code == 2 and "pass --overwrite" in _one_error_line(err, "evaluate")
        assert_untouched(before, tmp_path)


class TestTrainAndSample:
    def test_train_out_onto_a_training_image_is_refused(self, tmp_path, capsys):
        folder = write_subject(tmp_path / "train", shape=(16, 16, 16))
        before = snapshot(folder)
        code, err = _run(capsys, "train", "--data", tmp_path / "train", "--out", folder / "sub-01_T1w.nii.gz", "--max-steps", "1")
        assert code == 2 and "is the input" in _one_error_line(err, "train")
        assert_untouched(before, tmp_path)

    def test_train_out_under_a_regular_file_is_one_line(self, tmp_path, capsys):
        write_subject(tmp_path / "train", shape=(16, 16, 16))
        (tmp_path / "file").write_text("x")
        before = snapshot(tmp_path)
        code, err = _run(capsys, "train", "--data", tmp_path / "train", "--out", tmp_path / "file" / "m.pt", "--max-steps", "1")
        assert code == 2 and "is a file, not a folder" in _one_error_line(err, "train")
        assert_untouched(before, tmp_path)

    def test_sample_into_a_file_is_one_line(self, tmp_path, capsys):
        (tmp_path / "file").write_text("x")
        code, err = _run(capsys, "sample", tmp_path / "file", "--spacing", "8")
        assert code == 2 and "is a file, not a folder" in _one_error_line(err, "sample")
        code, err = _run(capsys, "sample", tmp_path / "file" / "sub", "--spacing", "8")
        assert code == 2 and f"{tmp_path / 'file'} is a file, not a folder" in _one_error_line(err, "sample")
        assert (tmp_path / "file").read_text() == "x" and temp_files(tmp_path) == []

    def test_sample_over_a_subject_with_corrections_needs_overwrite(self, tmp_path, capsys):
        pytest.importorskip("nilearn")
        out = tmp_path / "subjects"
        assert main(["sample", str(out), "--spacing", "8", "--seed", "1"]) == 0
        folder = out / "sub-phantom001"
        corrected = folder / "sub-phantom001_label-lesion_corrected.nii.gz"
        corrected.write_bytes((folder / "sub-phantom001_label-lesion_mask.nii.gz").read_bytes())
        before = snapshot(out)
        capsys.readouterr()
        code, err = _run(capsys, "sample", out, "--spacing", "8", "--seed", "2")
        assert code == 2 and str(corrected) in _one_error_line(err, "sample")
        assert_untouched(before, tmp_path)
        assert main(["sample", str(out), "--spacing", "8", "--seed", "2", "--overwrite"]) == 0
        assert not corrected.exists() and temp_files(tmp_path) == []
        assert (folder / "sub-phantom001_FLAIR.nii.gz").read_bytes() != before[folder / "sub-phantom001_FLAIR.nii.gz"]
