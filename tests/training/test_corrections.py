"""Fine-tuning on a corrected subject with a tiny real network: checks, naming, before/after, records,
replay of earlier corrections, cancel within one step, early stopping that keeps the best weights."""

from __future__ import annotations

import datetime
import threading

import numpy as np
import pytest
import torch
from conftest import TINY_FINETUNE as TINY
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
        "out_dir": tmp_path / "out", "batch_size": 2, "eval_every": 1,
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
    check_correction({"FLAIR": image}, np.ones((4, 5, 6)), "fixed", spacing=(12.0, 12.0, 12.0))  # 207 mL
    with pytest.raises(InvalidInputError, match="'fixed' marks 264 mL as lesion, more than any MS lesion load"):
        check_correction({"FLAIR": image}, np.ones((4, 5, 6)), "fixed", spacing=(13.0, 13.0, 13.0))


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
    assert record["lineage"] == ["parent"] and record["held_out"] == outcome.held_out
    assert [row["step"] for row in outcome.held_out] == [0, 1, 2]  # the parent, then after every step
    cases = sorted((tmp_path / "out" / "replay").iterdir())
    assert record["replay"] == [f"replay/{cases[0].name}"] and cases[0].name.startswith("sub-07-")
    assert sorted((tmp_path / "out").iterdir()) == [outcome.checkpoint, tmp_path / "out" / "replay"]  # nothing else


def test_cancelled_before_training_saves_nothing(parent, tmp_path):
    cancel = threading.Event()
    cancel.set()
    outcome = fine_tune_on_correction(_request(parent, tmp_path), cancel=cancel)
    assert outcome.cancelled and outcome.checkpoint is None and outcome.after is None and "dsc" in outcome.before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_wrong_inputs_are_refused(parent, tmp_path):
    request = _request(parent, tmp_path)
    with pytest.raises(CheckpointError, match="takes FLAIR, T1w, T2w, PDw but was given FLAIR"):
        fine_tune_on_correction(_request(parent, tmp_path, images={"FLAIR": request.images["FLAIR"]}))
    with pytest.raises(InvalidInputError, match="is empty"):
        fine_tune_on_correction(_request(parent, tmp_path, mask=np.zeros_like(request.mask)))
    with pytest.raises(InvalidInputError, match="unknown loss"):
        fine_tune_on_correction(_request(parent, tmp_path, loss="hinge"))
    with pytest.raises(InvalidInputError, match=r"the held-out tolerance must be in \[0, 1\), got -0.1"):
        fine_tune_on_correction(_request(parent, tmp_path, held_out_tolerance=-0.1))


def _weights(path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return model.state_dict()


def test_replay_includes_earlier_corrections_and_given_folders(parent, tmp_path, make_subject):
    first = fine_tune_on_correction(_request(parent, tmp_path, subject_name="sub-first"))
    images, mask = synthetic_anatomy((16, 16, 16), seed=5)
    second = fine_tune_on_correction(_request(
        first.checkpoint, tmp_path, images={m: images[m] for m in MODALITIES}, mask=mask, subject_name="sub-second",
        folders=(make_subject(name="sub-folder", shape=(16, 16, 16), seed=2),),
    ))  # fmt: skip
    assert second.replayed == ["sub-first", "sub-folder"]
    _, metadata = load_checkpoint(second.checkpoint)
    record = metadata.training["fine_tune"]
    assert record["lineage"] == ["parent", first.name] and record["replayed"] == ["sub-first", "sub-folder"]
    assert [entry.split("/")[-1].split("-")[1] for entry in record["replay"]] == ["first", "second"]
    third = fine_tune_on_correction(_request(second.checkpoint, tmp_path, subject_name="sub-third"))
    assert third.replayed == ["sub-first", "sub-second"]  # the lineage's cases, without the folder
    alone = fine_tune_on_correction(_request(second.checkpoint, tmp_path, subject_name="sub-x", replay=False))
    assert alone.replayed == []


def test_cancel_stops_within_one_step_and_saves_nothing(parent, tmp_path):
    cancel = threading.Event()
    from napari_lesionseg.training.corrections import iter_fine_tune_on_correction

    steps = iter_fine_tune_on_correction(_request(parent, tmp_path, steps=50, eval_every=10), cancel=cancel)
    trained = 0
    while True:
        try:
            progress = next(steps)
        except StopIteration as stop:
            outcome = stop.value
            break
        if progress.phase == "train":
            trained += 1
            cancel.set()
    assert trained == 1 and outcome.steps == 1 and outcome.cancelled and outcome.checkpoint is None
    assert not (tmp_path / "out").exists()


def test_early_stopping_keeps_the_best_weights(parent, tmp_path):
    model, metadata = load_checkpoint(parent)
    with torch.no_grad():
        model.classifier.bias.fill_(-30.0)  # finds nothing: no step at a tiny learning rate can beat it
    blind = tmp_path / "blind.pt"
    save_checkpoint(blind, model, metadata)
    request = _request(blind, tmp_path, steps=40, lr=1e-9, eval_every=2, patience=3, held_out_tolerance=0.0)
    outcome = fine_tune_on_correction(request)
    assert outcome.stopped == "patience" and outcome.steps == 6 and outcome.best_step == 0
    assert [row["step"] for row in outcome.held_out] == [0, 2, 4, 6]
    saved, original = _weights(outcome.checkpoint), model.state_dict()
    assert all(torch.equal(saved[key], original[key]) for key in original)  # the step-0 weights, BN statistics too


def test_a_held_out_score_within_the_tolerance_keeps_the_later_weights(parent, tmp_path):
    """A flat held-out curve is no harm: with a tolerance the run goes on and keeps its last weights."""
    model, metadata = load_checkpoint(parent)
    with torch.no_grad():
        model.classifier.bias.fill_(-30.0)  # every score is the same: DSC 0
    blind = tmp_path / "blind.pt"
    save_checkpoint(blind, model, metadata)
    request = _request(blind, tmp_path, steps=8, lr=1e-9, eval_every=2, patience=1, held_out_tolerance=0.02)
    outcome = fine_tune_on_correction(request)
    assert outcome.stopped is None and outcome.steps == 8 and outcome.best_step == 8
    assert [row["best_step"] for row in outcome.held_out] == [0, 2, 4, 6, 8]
    metadata = load_checkpoint(outcome.checkpoint)[1]
    assert metadata.training["fine_tune"]["settings"]["held_out_tolerance"] == 0.02


def test_a_miss_at_the_last_step_is_the_end_of_the_run_not_an_early_stop(parent, tmp_path):
    model, metadata = load_checkpoint(parent)
    with torch.no_grad():
        model.classifier.bias.fill_(-30.0)
    blind = tmp_path / "blind.pt"
    save_checkpoint(blind, model, metadata)
    request = _request(blind, tmp_path, steps=2, lr=1e-9, eval_every=2, patience=1, held_out_tolerance=0.0)
    outcome = fine_tune_on_correction(request)
    assert outcome.steps == 2 and outcome.best_step == 0 and outcome.stopped is None


def test_same_seed_gives_the_same_checkpoint(parent, tmp_path):
    first = fine_tune_on_correction(_request(parent, tmp_path, steps=3, seed=4))
    second = fine_tune_on_correction(_request(parent, tmp_path, steps=3, seed=4))
    other = fine_tune_on_correction(_request(parent, tmp_path, steps=3, seed=5))
    a, b, c = _weights(first.checkpoint), _weights(second.checkpoint), _weights(other.checkpoint)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in a)


def test_replayed_folders_are_resampled_to_the_corrected_subjects_spacing(tmp_path, make_subject):
    """Every patch of a fine-tune has one scale: a 1 mm folder replayed beside a 2 mm correction comes at 2 mm."""
    from conftest import make_affine

    from napari_lesionseg.training.correction_run import replay_subjects

    folder = make_subject(name="sub-fine", shape=(20, 20, 20), affine=make_affine((1.0, 1.0, 1.0)), seed=3)
    (native,) = replay_subjects([], [folder], MODALITIES)
    (coarse,) = replay_subjects([], [folder], MODALITIES, (2.0, 2.0, 2.0))
    assert tuple(native.spacing) == (1.0, 1.0, 1.0) and native.mask.shape == (20, 20, 20)
    assert tuple(coarse.spacing) == (2.0, 2.0, 2.0) and coarse.mask.shape == (10, 10, 10)
    assert coarse.image.shape == (4, 10, 10, 10) and coarse.mask.any()
