"""The training engine end to end on tiny real networks and real NIfTI subjects."""

import csv
import json
import threading

import numpy as np
import pytest
import torch
from conftest import requires_cuda, synthetic_anatomy, write_subject

from napari_lesionseg.data.intensity import NORMALIZATION
from napari_lesionseg.engine.checkpoints import load_checkpoint
from napari_lesionseg.errors import CheckpointError, InvalidInputError
from napari_lesionseg.training import TrainingConfig, fine_tune, iter_training, subject_from_arrays, train
from napari_lesionseg.training.state import STATE_FILE

#: A network of a few hundred parameters (one dense block down, 8^3 patches).
TINY = {
    "growth_rate": 2, "initial_features": 4, "dense_blocks_down": 1, "layers_per_block": 1,
    "multiscale_features": 2, "bottleneck_factor": 1, "input_stride2": False,
}  # fmt: skip



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two training subjects and one validation subject, 16^3 at 1 mm."""
    root = tmp_path_factory.mktemp("data")
    for seed in (1, 2):
        write_subject(root / "train", name=f"sub-0{seed}", shape=(16, 16, 16), seed=seed)
    write_subject(root / "val", name="sub-09", shape=(16, 16, 16), seed=9)
    return root


def _config(root, tmp_path, **overrides):
    options = {
        "data": [root / "train"], "out": tmp_path / "model.pt", "model": TINY, "patch_size": (8, 8, 8),
        "patches_per_subject": 2, "batch_size": 2, "epochs": 2, "val_tta": "none", "seed": 3,
    }  # fmt: skip
    return TrainingConfig(**{**options, **overrides})


def _weights(path):
    return load_checkpoint(path)[0].state_dict()


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_train_writes_a_loadable_checkpoint_with_metadata_and_history(data, tmp_path):
    config = _config(data, tmp_path, val=[data / "val"], loss="fbeta", beta=3.0)
    result = train(config)
    assert not result.cancelled and result.steps == result.total_steps == 4  # 2 subjects x 2 patches / 2, x 2 epochs
    model, metadata = load_checkpoint(result.checkpoint)
    assert metadata.name == "model" and metadata.loss == "fbeta" and metadata.beta == 3.0
    assert metadata.modalities == ["FLAIR", "T1w", "T2w", "PDw"] and metadata.patch_size == [8, 8, 8]
    assert metadata.normalization == NORMALIZATION and metadata.parent is None
    assert metadata.model["patch_size"] == [8, 8, 8]
    assert metadata.training["steps"] == 4 and metadata.training["seed"] == 3 and metadata.training["world_size"] == 1
    assert set(metadata.validation["subjects"]) == {"sub-09"}
    assert 0.0 <= metadata.validation["mean"]["dsc"] <= 1.0
    assert model(torch.zeros(1, 4, 8, 8, 8)).shape == (1, 1, 8, 8, 8)
    rows = list(csv.DictReader(open(tmp_path / "model_training" / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and [int(r["step"]) for r in rows] == [2, 4]
    assert all(r["val_dsc"] and r["train_loss"] for r in rows)
    assert json.loads((tmp_path / "model_training" / "history.json").read_text())[-1]["val_dsc"] == pytest.approx(
        metadata.validation["mean"]["dsc"]
    )


def test_progress_is_reported_after_every_step(data, tmp_path):
    events = list(_drain(iter_training(_config(data, tmp_path, val=[data / "val"], val_every=2))))
    steps = [e.step for e in events if e.phase == "train"]
    assert steps == [1, 2, 3, 4]
    assert [e.phase for e in events][-2:] == ["validate", "done"]  # validated after epoch 2 only
    assert all(e.lr == pytest.approx(5e-4) and np.isfinite(e.loss) for e in events if e.phase == "train")


def _drain(generator):
    while True:
        try:
            yield next(generator)
        except StopIteration:
            return


def test_same_seed_repeats_the_run(data, tmp_path):
    first = train(_config(data, tmp_path / "a"))
    second = train(_config(data, tmp_path / "b"))
    _assert_same_weights(_weights(first.checkpoint), _weights(second.checkpoint))


@pytest.mark.parametrize("stop_after", [1, 3])  # inside the first epoch; inside the second
def test_resume_after_cancel_reaches_the_uninterrupted_weights(data, tmp_path, stop_after):
    reference = train(_config(data, tmp_path / "ref", epochs=3))
    cancel = threading.Event()

    def stop(progress):
        if progress.step == stop_after:
            cancel.set()

    config = _config(data, tmp_path / "run", epochs=3, save_every=100)
    stopped = train(config, on_progress=stop, cancel=cancel)
    assert stopped.cancelled and stopped.checkpoint is None and stopped.steps == stop_after
    assert (config.run_dir / STATE_FILE).is_file() and not (tmp_path / "run" / "model.pt").exists()
    resumed = train(_config(data, tmp_path / "run", epochs=3, resume=True))
    assert not resumed.cancelled and resumed.steps == 6
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    _assert_same_weights(_weights(reference.checkpoint), _weights(resumed.checkpoint))


def test_resume_extends_a_finished_run_and_refuses_changed_settings(data, tmp_path):
    train(_config(data, tmp_path))
    with pytest.raises(InvalidInputError, match="--resume"):
        train(_config(data, tmp_path))
    with pytest.raises(CheckpointError, match="beta"):
        train(_config(data, tmp_path, beta=1.0, resume=True))
    again = train(_config(data, tmp_path, resume=True))
    assert again.steps == 4 and len(again.history) == 2  # nothing left to do
    longer = train(_config(data, tmp_path, resume=True, epochs=3))
    assert longer.steps == 6 and [row["epoch"] for row in longer.history] == [1, 2, 3]


def test_max_steps_stops_inside_an_epoch_and_still_validates(data, tmp_path):
    result = train(_config(data, tmp_path, val=[data / "val"], epochs=5, max_steps=3))
    assert result.steps == result.total_steps == 3
    assert result.history[-1]["step"] == 3 and "val_dsc" in result.history[-1]
    assert result.validation["step"] == 3


@pytest.mark.parametrize(
    ("loss", "params"),
    [
        ("fbeta", {}), ("tversky", {"alpha": 0.3, "beta": 0.7}), ("dice", {}), ("gdl", {}),
        ("focal", {"gamma": 1.0}), ("boundary", {}),
    ],  # fmt: skip
)
def test_every_loss_trains(data, tmp_path, loss, params):
    result = train(_config(data, tmp_path, loss=loss, loss_params=params, max_steps=2))
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    metadata = load_checkpoint(result.checkpoint)[1]
    assert metadata.loss == loss and metadata.training["loss_params"] == params
    assert (metadata.beta is None) == (loss != "fbeta")


def test_fine_tune_from_in_memory_subjects_records_the_parent(data, tmp_path):
    parent = train(_config(data, tmp_path / "parent", name="base"))
    images, mask = synthetic_anatomy((16, 16, 16), seed=5)
    stack = np.stack([images[m] for m in ("FLAIR", "T1w", "T2w", "PDw")])
    subject = subject_from_arrays(stack, mask, (1.0, 1.0, 1.0), "annotated")
    result = fine_tune(parent.checkpoint, tmp_path / "tuned.pt", subjects=[subject], steps=2, patches_per_subject=2)
    metadata = load_checkpoint(result.checkpoint)[1]
    assert result.steps == 2 and metadata.parent == "base" and metadata.beta == 1.5
    assert metadata.training["lr"] == 1e-4 and metadata.training["init_checkpoint"] == str(parent.checkpoint)


def test_inputs_that_cannot_train(data, tmp_path):
    with pytest.raises(InvalidInputError, match="no training subjects"):
        train(_config(data, tmp_path, data=[]))
    unlabelled = write_subject(tmp_path / "nomask", shape=(8, 8, 8), with_mask=False)
    with pytest.raises(InvalidInputError, match="no lesion mask"):
        train(_config(data, tmp_path, data=[unlabelled]))
    with pytest.raises(InvalidInputError, match="multiple of 2"):
        train(_config(data, tmp_path, patch_size=(8, 8, 7)))
    with pytest.raises(InvalidInputError, match="unknown loss"):
        _config(data, tmp_path, loss="hinge")


def test_names_and_work_folder_follow_the_checkpoint_file(tmp_path):
    config = TrainingConfig(data=[], out=tmp_path / "weights" / "fbeta_1.5.pt")
    assert config.checkpoint_name == "fbeta_1.5"
    assert config.run_dir == tmp_path / "weights" / "fbeta_1.5_training"
    assert TrainingConfig(data=[], out="m.pt", name="mine", work_dir=tmp_path).run_dir == tmp_path
    with pytest.raises(InvalidInputError, match="batch_size must be >= 1"):
        TrainingConfig(data=[], out="m.pt", batch_size=0)


@requires_cuda
def test_trains_on_the_gpu_with_mixed_precision(data, tmp_path):
    config = _config(data, tmp_path, device="cuda", epochs=40, patches_per_subject=4, val=[data / "val"], val_every=40)
    events = list(_drain(iter_training(config)))
    losses = [e.loss for e in events if e.phase == "train"]
    assert len(losses) == 160 and all(np.isfinite(losses))
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    model, metadata = load_checkpoint(config.out)
    assert metadata.training["steps"] == 160 and 0.0 <= metadata.validation["mean"]["dsc"] <= 1.0
