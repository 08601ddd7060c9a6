"""Clear limits before allocating: patch size against the volume and the memory budget, overlap
against a maximum number of patches, and progress a log file can follow."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from _faults import assert_untouched, snapshot
from conftest import TINY_FCDENSENET, write_subject

from napari_lesionseg.cli import _patch_progress, main
from napari_lesionseg.constants import CORE_MODALITIES
from napari_lesionseg.engine import patches
from napari_lesionseg.engine import predict as engine_predict
from napari_lesionseg.engine.patches import check_workload, make_grid
from napari_lesionseg.errors import InvalidInputError, LesionSegWarning

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


def _predict(folder, checkpoint, out, *extra):
    return main(["predict", str(folder), "--checkpoint", str(checkpoint), "--mask-out", str(out), "--device", "cpu", "--no-tta", *extra])


def test_a_patch_far_beyond_the_volume_is_refused_with_the_sizes(monkeypatch):
    monkeypatch.setenv("LESIONSEG_MEMORY_LIMIT", "8G")
    grid = make_grid((91, 109, 91), 4096)
    with pytest.raises(InvalidInputError) as caught:
        check_workload(grid, channels=4, batch_size=2, variants=4)
    message = str(caught.value)
    assert "patch size 4096x4096x4096 on a 91x109x91 volume needs at least" in message
    assert "more than the 8.0 GiB available" in message and "covered by 91x109x91" in message
    check_workload(make_grid((91, 109, 91), 32), channels=4, batch_size=2, variants=4)  # the usual case passes


def test_a_huge_patch_size_stops_predict_with_one_line(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(engine_predict, "SMALL_FIELD_ML", 0.0)  # a tiny volume's note is not what this counts
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    before = snapshot(folder)
    out = tmp_path / "out" / "m.nii.gz"
    assert _predict(folder, checkpoint, out, "--patch-size", "4096", "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "patch size 4096x4096x4096 on a 10x12x14 volume" in err[0]  # canonical (S, P, L)
    assert not out.exists()
    assert_untouched(before, tmp_path)


def test_a_very_high_overlap_warns_with_the_count_and_an_extreme_one_is_refused():
    grid = make_grid((91, 109, 91), 32, overlap=0.99)
    with pytest.warns(LesionSegWarning, match=r"overlap 0.99 with 32x32x32 patches gives 280,800 patches x 4 augmentation\(s\) \(150 at overlap 0.5\)"):
        check_workload(grid, channels=4, batch_size=2, variants=4)
    with pytest.raises(InvalidInputError, match="lower the overlap"):
        check_workload(make_grid((182, 218, 182), 16, overlap=0.99), channels=4, batch_size=2, variants=4)


def test_predict_refuses_too_many_patches_before_writing(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(patches, "MAX_PATCHES", 10)
    monkeypatch.setattr(patches, "LARGE_GRID_PATCHES", 5)
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    before = snapshot(folder)
    assert _predict(folder, checkpoint, tmp_path / "m.nii.gz", "--overlap", "0.9", "--quiet") == 2
    assert "lower the overlap" in capsys.readouterr().err
    assert not (tmp_path / "m.nii.gz").exists()
    assert_untouched(before, tmp_path)


def test_off_a_terminal_progress_comes_as_lines_and_a_large_run_gets_an_estimate(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(engine_predict, "SMALL_FIELD_ML", 0.0)  # a tiny volume's note is not what this counts
    monkeypatch.setattr(_patch_progress, "LOG_EVERY_S", 0.0)
    monkeypatch.setattr(patches, "LARGE_GRID_PATCHES", 3)
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    assert _predict(folder, checkpoint, tmp_path / "m.nii.gz", "--overlap", "0.5") == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "sub-01: checkpoint tiny"  # which network runs, before its warnings
    assert lines[1].startswith("lesionseg predict: warning: overlap 0.5 with 8x8x8 patches gives 12 patches")
    assert lines[2].startswith("sub-01: warning: 12 patches;") and "patches/s, about" in lines[2]
    progress = [line for line in lines if "/12 patches;" in line]
    assert len(progress) == 6 and progress[-1].startswith("sub-01: 12/12 patches;")  # batches of 2


def test_progress_on_a_terminal_stays_on_one_line():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = _patch_progress.PatchProgress("sub-01", quiet=False, stream=stream)
    event = type("Event", (), {"done": 2, "total": 4, "message": None})()
    progress(event)
    progress.close()
    assert stream.getvalue() == "\rsub-01: 2/4 patches\r"
    assert _patch_progress.format_duration(7320) == "2 h 2 min" and _patch_progress.format_duration(75) == "1 min 15 s"
