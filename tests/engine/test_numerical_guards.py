"""Numerical guards: NaN/Inf weights are refused and listed as unusable, non-finite network output
stops a run, and the checkpoint lookup never contradicts itself (shadowing, folders)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from _faults import assert_untouched, snapshot
from conftest import TINY_FCDENSENET, write_subject

from napari_lesionseg.cli import main
from napari_lesionseg.constants import CORE_MODALITIES
from napari_lesionseg.engine import checkpoints
from napari_lesionseg.engine.checkpoints import (
    CheckpointMetadata,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    scan_checkpoints,
    user_checkpoint_dir,
)
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import CheckpointError
from napari_lesionseg.models import build_model, model_config

SHAPE = (14, 12, 10)


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(checkpoints, "BUNDLED_DIR", tmp_path / "bundled")


def _model_and_metadata(name: str = "tiny") -> tuple[torch.nn.Module, CheckpointMetadata]:
    config = model_config("compact", in_channels=len(CORE_MODALITIES), **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        name=name, model=config, loss="fbeta", beta=1.5, modalities=list(CORE_MODALITIES), patch_size=[8, 8, 8]
    )
    return build_model(config).eval(), metadata


def _poison(model: torch.nn.Module, value: float = float("nan")) -> str:
    name, parameter = next((n, p) for n, p in model.named_parameters() if p.ndim > 1)
    with torch.no_grad():
        parameter.view(-1)[0] = value
    return name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_and_listed_as_unusable(tmp_path, value, capsys):
    model, metadata = _model_and_metadata("diverged")
    tensor = _poison(model, value)
    path = save_checkpoint(user_checkpoint_dir() / "diverged.pt", model, metadata)
    save_checkpoint(user_checkpoint_dir() / "good.pt", *_model_and_metadata("good"))
    before = snapshot(path)
    with pytest.raises(CheckpointError, match="NaN or infinite") as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and tensor in str(caught.value)
    found, bad = scan_checkpoints()
    assert [i.name for i in found] == ["good"] and [(b.name, b.source) for b in bad] == [("diverged", "user")]
    assert main(["checkpoints", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["good"]["usable"] and not rows["diverged"]["usable"] and "NaN" in rows["diverged"]["problem"]
    assert_untouched(before, tmp_path)


def test_predict_with_a_nan_checkpoint_stops_with_one_line_and_writes_nothing(tmp_path, capsys):
    model, metadata = _model_and_metadata()
    _poison(model)
    path = save_checkpoint(tmp_path / "nan.pt", model, metadata)
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    before = snapshot(folder, path)
    out = tmp_path / "out"
    code = main(["predict", str(folder), "--checkpoint", str(path), "--mask-out", str(out / "m.nii.gz"), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NaN or infinite" in err[0]
    assert not (out / "m.nii.gz").exists()
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize("stream", [True, False], ids=["checked-per-batch", "checked-at-the-end"])
def test_non_finite_network_output_stops_the_run(tmp_path, stream):
    model, metadata = _model_and_metadata()
    _poison(model)  # a network handed over already loaded, so load_checkpoint never saw it
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    from napari_lesionseg.data.subject import load_subject

    events = []
    settings = InferenceSettings(tta="none", device="cpu", stream_partial=stream, uncertainty=False)
    with pytest.raises(CheckpointError, match="network's output is NaN or infinite"):
        predict(load_subject(folder), (model, metadata), settings, callback=events.append)
    assert len(events) == 0 if stream else len(events) > 0  # per batch: stopped at the first one


def test_a_corrupt_user_file_shadowing_a_bundled_checkpoint_says_so(tmp_path):
    bundled = save_checkpoint(checkpoints.BUNDLED_DIR / "fbeta_1.5.pt", *_model_and_metadata("fbeta_1.5"))
    shadow = user_checkpoint_dir() / "fbeta_1.5.pt"
    shadow.parent.mkdir(parents=True)
    shadow.write_bytes(b"PK\x03\x04 not really a zip")
    before = snapshot(bundled, shadow)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint("fbeta_1.5")
    message = str(caught.value)
    assert str(shadow) in message and "shadows the bundled checkpoint 'fbeta_1.5'" in message and str(bundled) in message
    found, bad = scan_checkpoints()
    assert [(i.name, i.source) for i in found] == [("fbeta_1.5", "bundled")]
    assert "shadows the bundled" in bad[0].problem
    load_checkpoint(bundled)  # the bundled one stays reachable by path
    assert_untouched(before, tmp_path)


def test_a_folder_named_like_a_checkpoint_is_reported_as_a_folder(tmp_path):
    (user_checkpoint_dir() / "dir.pt").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="not a checkpoint file") as caught:
        resolve_checkpoint("dir")
    assert "available" not in str(caught.value)  # no "no checkpoint named 'dir' ... available: dir"
    assert scan_checkpoints() == ([], [])
    (tmp_path / "models").mkdir()
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        resolve_checkpoint(f"{tmp_path / 'models'}/")


def test_finite_results_pass(tmp_path):
    model, metadata = _model_and_metadata()
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    from napari_lesionseg.data.subject import load_subject

    result = predict(load_subject(folder), (model, metadata), InferenceSettings(tta="none", device="cpu"))
    assert np.isfinite(result.probability).all() and dataclasses.is_dataclass(result)
