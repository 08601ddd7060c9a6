"""`lesionseg checkpoints [--json]` on real checkpoint files in temporary user and bundled folders."""

from __future__ import annotations

import json

import pytest
import torch

from napari_lesionseg.cli import main
from napari_lesionseg.engine import checkpoints
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, save_checkpoint, user_checkpoint_dir
from napari_lesionseg.models import build_model, model_config


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(checkpoints, "BUNDLED_DIR", tmp_path / "bundled")


def _write(path, *, loss="fbeta", beta=1.5, validation=None, parent=None, **fields):
    config = model_config("unet", in_channels=2, base_features=2, depth=1, patch_size=[8, 8, 8])
    metadata = CheckpointMetadata(
        name=path.stem, model=config, loss=loss, beta=beta, modalities=["FLAIR", "T2w"], patch_size=[8, 8, 8],
        validation=validation or {}, parent=parent, **fields,
    )
    torch.manual_seed(0)
    return save_checkpoint(path, build_model(config), metadata)


def test_json_lists_user_then_bundled_checkpoints(capsys):
    _write(checkpoints.BUNDLED_DIR / "paper-beta1.5.pt", validation={"dsc": 0.6512})
    _write(user_checkpoint_dir() / "my-finetune.pt", loss="focal", beta=None, parent="paper-beta1.5")
    _write(user_checkpoint_dir() / "trained.pt", validation={"mean": {"dsc": 0.5}, "subjects": {}})
    assert main(["checkpoints", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [(row["name"], row["source"]) for row in rows]
    assert names == [("my-finetune", "user"), ("trained", "user"), ("paper-beta1.5", "bundled")]
    finetune, trained, bundled = rows
    assert trained["dsc"] == 0.5  # the training loop's layout: mean over validation subjects
    assert finetune["loss"] == "focal" and finetune["beta"] is None and finetune["dsc"] is None
    assert finetune["parent"] == "paper-beta1.5"
    assert bundled["beta"] == 1.5 and bundled["dsc"] == pytest.approx(0.6512)
    assert bundled["modalities"] == ["FLAIR", "T2w"] and bundled["patch_size"] == [8, 8, 8]
    assert bundled["architecture"] == "unet"


def test_table_shows_name_loss_beta_inputs_spacing_patch_and_dsc(capsys):
    _write(checkpoints.BUNDLED_DIR / "paper-beta1.5.pt", validation={"dsc": 0.6512})
    _write(checkpoints.BUNDLED_DIR / "subset.pt", optional_modalities=["T2w"], spacing=[1.0, 1.0, 3.0])
    assert main(["checkpoints"]) == 0
    out = capsys.readouterr().out
    header, row, subset = out.splitlines()[:3]
    assert header.split() == ["name", "source", "loss", "beta", "needs", "optional", "mm", "patch", "val.", "DSC"]
    assert row.split() == ["paper-beta1.5", "bundled", "fbeta", "1.5", "FLAIR,T2w", "-", "?", "8x8x8", "0.651"]
    assert subset.split()[4:7] == ["FLAIR", "T2w", "1x1x3"]
    assert str(user_checkpoint_dir()) in out


def test_json_says_which_inputs_are_required_and_the_model_spacing(capsys):
    _write(checkpoints.BUNDLED_DIR / "subset.pt", optional_modalities=["T2w"], spacing=[1.0, 1.0, 1.0])
    assert main(["checkpoints", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["required"] == ["FLAIR"] and row["optional"] == ["T2w"] and row["spacing"] == [1.0, 1.0, 1.0]


def test_no_checkpoints(capsys):
    assert main(["checkpoints"]) == 0
    assert "no checkpoints found" in capsys.readouterr().out
    assert main(["checkpoints", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_unreadable_file_is_reported_and_skipped(capsys):
    _write(user_checkpoint_dir() / "good.pt")
    (user_checkpoint_dir() / "broken.pt").write_bytes(b"\x00" * 64)
    assert main(["checkpoints", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["name"], row["usable"]) for row in rows] == [("good", True), ("broken", False)]
    assert "broken.pt" in rows[1]["problem"] and rows[0]["problem"] is None
    assert main(["checkpoints"]) == 0
    assert "unusable: broken (user):" in capsys.readouterr().out
