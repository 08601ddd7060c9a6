"""Fine-tuning on a corrected subject with a tiny real network: checks, naming, before/after, records."""

from __future__ import annotations

import datetime
import threading

import numpy as np
import pytest
import torch
from conftest import synthetic_anatomy

from napari_lesionseg.engine.checkpoints import CheckpointMetadata, load_checkpoint, save_checkpoint
from napari_lesionseg.errors import CheckpointError, InvalidInputError
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.training.corrections import (
    FineTuneRequest,
    check_correction,
    fine_tune_on_correction,
    new_checkpoint_path,
)

MODALITIES = ["FLAIR", "T1w", "T2w", "PDw"]
TINY = {
    "input_stride2": False, "dense_blocks_down": 1, "layers_per_block": 1, "growth_rate": 2,
    "initial_features": 4, "multiscale_features": 2, "bottleneck_factor": 1, "patch_size": [8, 8, 8],
}  # fmt: skip


@pytest.fixture
def parent(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    config = model_config("compact", 4, **TINY)
    torch.manual_seed(0)
    path = tmp_path / "parent.pt"
    save_checkpoint(path, build_model(config), CheckpointMetadata("parent", config, "fbeta", 1.5, MODALITIES, [8, 8, 8]))
    return path


def _request(parent, tmp_path, **overrides) -> FineTuneRequest:
    images, mask = synthetic_anatomy((16, 16, 16), seed=3)
    fields = {
        "checkpoint": parent, "images": {m: images[m] for m in MODALITIES}, "mask": mask, "spacing": (1.0, 1.0, 1.0),
        "subject_name": "sub-07", "mask_name": "corrected mask", "steps": 2, "lr": 1e-3, "device": "cpu",
        "out_dir": tmp_path / "out",
    }  # fmt: skip
    return FineTuneRequest(**{**fields, **overrides})


def test_check_correction_refuses_unusable_data():
    image = np.zeros((4, 5, 6), np.float32)
    with pytest.raises(InvalidInputError, match="No image layers"):
        check_correction({}, np.ones((4, 5, 6)))
    with pytest.raises(InvalidInputError, match=r"'fixed' has shape \(4, 5, 7\) but the images do not: 'FLAIR' \(4, 5, 6\)"):
        check_correction({"FLAIR": image}, np.ones((4, 5, 7)), "fixed")
    with pytest.raises(InvalidInputError, match="'fixed' is empty"):
        check_correction({"FLAIR": image}, np.zeros((4, 5, 6)), "fixed")
    check_correction({"FLAIR": image}, np.ones((4, 5, 6)))


def test_new_names_never_reuse_a_file_or_the_parent(tmp_path):
    now = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    first = new_checkpoint_path("beta 1.5", "sub 01/x", tmp_path, now=now)
    assert first.name == "beta-1.5_ft-sub-01-x-20250102-030405.pt"
    first.touch()
    assert new_checkpoint_path("beta 1.5", "sub 01/x", tmp_path, now=now).name.endswith("-030405-2.pt")


def test_fine_tune_saves_a_child_with_before_after_and_its_data(parent, tmp_path):
    phases = []
    outcome = fine_tune_on_correction(_request(parent, tmp_path), on_progress=lambda p: phases.append(p.phase))
    assert not outcome.cancelled and outcome.steps == 2 and len(outcome.losses) == 2
    assert outcome.checkpoint.parent == tmp_path / "out" and outcome.name.startswith("parent_ft-sub-07-")
    assert phases[0] == "baseline" and phases.count("train") == 2 and phases[-1] == "done"
    assert set(outcome.before) >= {"dsc", "sensitivity"} and set(outcome.after) >= {"dsc", "sensitivity"}
    _, metadata = load_checkpoint(outcome.checkpoint)
    record = metadata.training["fine_tune"]
    assert metadata.parent == "parent" and metadata.training["lr"] == 1e-3
    assert record["viewer_subjects"][0]["name"] == "sub-07" and record["viewer_subjects"][0]["lesion_voxels"] > 0
    assert record["metrics_before"] == outcome.before and record["metrics_after"] == outcome.after
    assert list((tmp_path / "out").iterdir()) == [outcome.checkpoint]  # no training leftovers beside it


def test_cancelled_before_training_saves_nothing(parent, tmp_path):
    cancel = threading.Event()
    cancel.set()
    outcome = fine_tune_on_correction(_request(parent, tmp_path), cancel=cancel)
    assert outcome.cancelled and outcome.checkpoint is None and outcome.after is None and "dsc" in outcome.before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_wrong_inputs_are_refused(parent, tmp_path):
    request = _request(parent, tmp_path)
    with pytest.raises(CheckpointError, match="takes 4 images"):
        fine_tune_on_correction(_request(parent, tmp_path, images={"FLAIR": request.images["FLAIR"]}))
    with pytest.raises(InvalidInputError, match="is empty"):
        fine_tune_on_correction(_request(parent, tmp_path, mask=np.zeros_like(request.mask)))
    with pytest.raises(InvalidInputError, match="unknown loss"):
        fine_tune_on_correction(_request(parent, tmp_path, loss="hinge"))
