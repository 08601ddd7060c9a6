"""Fine-tune dock in a real headless viewer: bad states, cancel, a full run that saves a new checkpoint,
keeps the GUI responsive, raises the DSC on the corrected subject and re-runs inference with it."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
import torch
from napari.layers import Layer
from qtpy.QtCore import QTimer

from napari_lesionseg._napari._session import session_for
from napari_lesionseg._napari.docks import FineTuneWidget
from napari_lesionseg._napari.reader import subject_layer_data
from napari_lesionseg.data.intensity import normalize_stack
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import (
    CheckpointMetadata,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    user_checkpoint_dir,
)
from napari_lesionseg.engine.run import run_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.evaluation.metrics import compute_metrics
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.training.corrections import EVALUATION

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODALITIES = ["FLAIR", "T1w", "T2w", "PDw"]
PATCH = (16, 16, 16)
#: A few thousand parameters: one dense block down, 16^3 patches.
TINY = {
    "input_stride2": False, "dense_blocks_down": 1, "layers_per_block": 1, "growth_rate": 4,
    "initial_features": 8, "multiscale_features": 4, "bottleneck_factor": 1, "patch_size": list(PATCH),
}  # fmt: skip
PARENT = "tiny-misses"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _parent_checkpoint() -> tuple[torch.nn.Module, CheckpointMetadata]:
    """A tiny network whose output bias makes it miss every lesion (probabilities about 0.05)."""
    config = model_config("compact", len(MODALITIES), **TINY)
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        model.classifier.bias.fill_(-3.0)
    metadata = CheckpointMetadata(PARENT, config, "fbeta", 1.5, MODALITIES, list(PATCH))
    save_checkpoint(user_checkpoint_dir() / f"{PARENT}.pt", model, metadata)
    return model, metadata


@pytest.fixture
def dock(home, make_napari_viewer, make_subject):
    """A viewer with a 24^3 subject, its corrected mask (the reference) and the Fine-tune dock."""
    _parent_checkpoint()
    viewer = make_napari_viewer()
    folder = make_subject(shape=(24, 24, 24))
    for data, kwargs, layer_type in subject_layer_data(load_subject(folder)):
        viewer.add_layer(Layer.create(data, kwargs, layer_type))
    flair = viewer.layers["FLAIR"]
    viewer.add_labels(
        np.array(viewer.layers["reference mask"].data, copy=True), name="corrected mask",
        scale=flair.scale, translate=flair.translate, metadata=dict(flair.metadata),
    )  # fmt: skip
    _, widget = viewer.window.add_plugin_dock_widget("napari-lesionseg", "Fine-tune")  # through the manifest
    assert isinstance(widget, FineTuneWidget)
    widget.set_checkpoint(PARENT)
    widget.configure(iterations=20, lr=0.01, batch_size=2, device="cpu", loss="fbeta", beta=1.5)
    return viewer, widget, folder


def _messages(since: int) -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[since:]]


def _count() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def _user_checkpoints() -> list[str]:
    return sorted(info.name for info in list_checkpoints() if info.source == "user")


def _dsc(model: torch.nn.Module, folder, mask: np.ndarray) -> float:
    """DSC of `model` on the subject against `mask`, by the inference engine (as the dock measures, not through it)."""
    subject = load_subject(folder)
    stack = normalize_stack(subject.stack(MODALITIES))
    settings = InferenceSettings(
        patch_size=PATCH, overlap=EVALUATION["overlap"], tta="none", device="cpu", uncertainty=False, stream_partial=False
    )
    result = run_inference(model, stack, settings, size_divisor=2)
    return compute_metrics(result.mask, mask != 0, spacing=subject.geometry.spacing)["dsc"]


def test_dock_preselects_the_corrected_mask_and_lists_the_checkpoint(dock):
    viewer, widget, _ = dock
    assert widget._mask.value is viewer.layers["corrected mask"]
    assert widget._checkpoint.value == str(user_checkpoint_dir() / f"{PARENT}.pt")
    assert set(widget._checkpoint.choices) == {str(info.path) for info in list_checkpoints()}
    assert widget._images_label.value == "Images: FLAIR, T1w, T2w, PDw"
    model, metadata = _parent_checkpoint()
    dice = CheckpointMetadata("tiny-dice", metadata.model, "dice", None, MODALITIES, list(PATCH))
    save_checkpoint(user_checkpoint_dir() / "tiny-dice.pt", model, dice)
    widget.set_checkpoint("tiny-dice")  # saved after the dock read the list: found on a re-read
    assert widget._settings.loss.value == "dice" and not widget._settings.beta.enabled  # settings start from the checkpoint's


def test_before_any_run_it_starts_from_what_the_inference_dock_would_run(home, make_napari_viewer, make_subject):
    from napari_lesionseg._napari.docks import InferenceWidget

    viewer = make_napari_viewer()
    for data, kwargs, layer_type in subject_layer_data(load_subject(make_subject(modalities=("FLAIR", "T1w")))):
        viewer.add_layer(Layer.create(data, kwargs, layer_type))
    widget, inference = FineTuneWidget(viewer), InferenceWidget(viewer)
    first_listed = widget._checkpoint.choices[0]
    assert widget._checkpoint.value == inference._model._checkpoint.value != first_listed
    assert widget._images_label.value == "Images: FLAIR, T1w"
    widget._checkpoint.value = first_listed  # the user's choice is kept when the list is read again
    widget.refresh_checkpoints()
    assert widget._checkpoint.value == first_listed


def test_an_optional_input_may_lack_but_a_required_one_may_not(dock):
    """A checkpoint whose PDw is optional trains on the three layers the viewer has; without T2w it says so."""
    viewer, widget, _ = dock
    model, metadata = _parent_checkpoint()
    metadata.name, metadata.optional_modalities = "tiny-optional", ["PDw"]
    save_checkpoint(user_checkpoint_dir() / "tiny-optional.pt", model, metadata)
    viewer.layers.remove("PDw")
    widget.set_checkpoint("tiny-optional")
    assert widget._images_label.value == "Images: FLAIR, T1w, T2w"
    assert list(widget._request().images) == ["FLAIR", "T1w", "T2w"]
    viewer.layers.remove("T2w")
    widget.set_checkpoint(PARENT)
    widget.set_checkpoint("tiny-optional")
    assert widget._images_label.value == "Images: missing T2w (open the subject's modalities)"


def test_the_request_carries_the_prediction_the_corrected_mask_started_from(dock):
    """What the user changed is the run's mask against the corrected one: the dock hands over the run's mask."""
    from napari_lesionseg._napari._corrected_masks import CorrectedMasks

    viewer, widget, _ = dock
    assert widget._request().predicted is None  # a mask made by hand: the fine-tune predicts it itself
    reference = np.asarray(viewer.layers["reference mask"].data) != 0
    run_mask = reference.copy()
    run_mask[:4] = True  # a false positive slab the user will reject
    prediction = viewer.add_labels(run_mask.astype(np.uint8), name="fbeta mask", metadata=dict(viewer.layers["FLAIR"].metadata))
    corrected = CorrectedMasks(viewer).new_from(prediction)
    corrected.data[:4] = reference[:4]  # the rejection, painted after the copy was made
    widget.set_mask(corrected)
    request = widget._request()
    assert request.predicted is not None and np.array_equal(request.predicted, run_mask)
    assert np.array_equal(request.mask != 0, reference)
    prediction.data[...] = 0  # editing the run's layer later does not change what the correction started from
    assert np.array_equal(widget._request().predicted, run_mask)


def test_bad_states_are_notifications(dock):
    viewer, widget, _ = dock
    corrected = viewer.layers["corrected mask"]
    widget.configure(lr=2.0)
    start = _count()
    assert widget.start() is None
    assert any("Learning rate '2'" in m for m in _messages(start))
    widget.configure(lr=1e-3)
    corrected.data[...] = 0
    start = _count()
    assert widget.start() is None
    assert any("'corrected mask' is empty" in m for m in _messages(start))
    wrong = viewer.add_labels(np.ones((8, 8, 8), np.uint8), name="other grid")
    widget.set_mask(wrong)
    start = _count()
    assert widget.start() is None
    assert any("'other grid' has shape (8, 8, 8) but the images do not" in m for m in _messages(start))
    viewer.layers.remove("T2w")
    start = _count()
    assert widget.start() is None
    assert any("no image layer for T2w" in m for m in _messages(start))
    assert widget._images_label.value.startswith("Images: missing T2w")
    assert not widget.busy


def _cancel_a_long_run(widget, qtbot):
    """Start a 500-step fine-tune, cancel it after its first step and wait for the worker to end."""
    widget.configure(iterations=500, measure=False)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: len(widget.losses) >= 1, timeout=60_000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    return widget.outcome


def test_cancel_stops_after_the_current_step_and_saves_nothing(dock, qtbot):
    _, widget, _ = dock
    outcome = _cancel_a_long_run(widget, qtbot)
    assert outcome.cancelled and outcome.checkpoint is None and outcome.steps < 500
    assert _user_checkpoints() == [PARENT]
    assert "nothing saved" in widget._status.value
    assert widget._progress.value == outcome.steps < widget._progress.max  # the bar stays where it was cancelled


def test_a_run_stopped_early_shows_a_full_progress_bar(dock, qtbot):
    """Early stopping ends the run: the bar must not stay a third of the way under "Saved ..., stopped early"."""
    import dataclasses

    _, widget, _ = dock
    outcome = _cancel_a_long_run(widget, qtbot)
    stopped = dataclasses.replace(outcome, cancelled=False, stopped="patience")  # as patience ends a run
    widget._on_finished(stopped)
    assert widget._progress.value == widget._progress.max == 500


@pytest.mark.slow
def test_fine_tune_saves_a_child_checkpoint_raises_dsc_and_keeps_the_gui_responsive(dock, qtbot, make_subject):
    viewer, widget, folder = dock
    check = make_subject(name="sub-02", shape=(24, 24, 24), seed=5)  # another subject, never trained on
    parent_file = user_checkpoint_dir() / f"{PARENT}.pt"
    parent_hash = hashlib.sha256(parent_file.read_bytes()).hexdigest()
    changed = []
    session_for(viewer).checkpoints_changed.connect(lambda: changed.append(True))
    gaps, last = [], [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(25)
    timer.timeout.connect(tick)
    timer.start()
    widget.add_check_folder(check)
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    timer.stop()

    outcome = widget.outcome
    assert outcome is not None and not outcome.cancelled and outcome.steps == 20
    assert max(gaps) < 0.5, f"the GUI thread was blocked for {max(gaps):.2f} s"
    # a new checkpoint, listed at once, recording its parent and data; the parent is untouched
    assert outcome.checkpoint.parent == user_checkpoint_dir() and outcome.name != PARENT
    infos = {info.name: info for info in list_checkpoints()}
    assert _user_checkpoints() == sorted([PARENT, outcome.name]) and infos[outcome.name].metadata.parent == PARENT
    assert changed
    qtbot.waitUntil(lambda: str(outcome.checkpoint) in widget._checkpoint.choices, timeout=10_000)
    record = infos[outcome.name].metadata.training["fine_tune"]
    assert record["viewer_subjects"][0]["name"] == "sub-01" and record["viewer_subjects"][0]["mask_layer"] == "corrected mask"
    assert hashlib.sha256(parent_file.read_bytes()).hexdigest() == parent_hash
    # the dock showed the run: loss, held-out scores (step 0 is the parent), the check subject before and after
    assert len(widget.losses) == 20 and widget._loss_plot.x.size == 20 and widget._progress.value == 20
    held_out = [row["step"] for row in outcome.held_out]
    assert held_out[0] == 0 and list(widget._held_out_plot.x) == held_out and widget._held_out_plot.marker is not None
    assert widget._held_out_plot.marker[0] == outcome.best_step
    assert set(outcome.checked_before) == set(outcome.checked_after) == {"sub-02"}
    assert outcome.checked_after["sub-02"]["dsc"] > outcome.checked_before["sub-02"]["dsc"] + 0.2
    checked = widget._checked.data.to_list()
    assert checked[0][:3] == ["sub-02", f"{outcome.checked_before['sub-02']['dsc']:.3f}", f"{outcome.checked_after['sub-02']['dsc']:.3f}"]
    assert widget._status.value.startswith(f"Saved {outcome.name!r} from {PARENT!r}") and f"kept step {outcome.best_step}" in widget._status.value
    rows = {row[0]: row for row in widget._table.data.to_list()}
    assert rows["DSC"][1] == f"{outcome.before['dsc']:.3f}" and rows["DSC"][2] == f"{outcome.after['dsc']:.3f}"
    # honest check, independent of the dock: the fine-tuned network finds the lesions the parent missed
    corrected = np.asarray(viewer.layers["corrected mask"].data)
    dsc_before = _dsc(load_checkpoint(parent_file)[0], folder, corrected)
    dsc_after = _dsc(load_checkpoint(outcome.checkpoint)[0], folder, corrected)
    assert dsc_before < 0.05 and dsc_after > dsc_before + 0.3
    assert outcome.after["dsc"] == pytest.approx(dsc_after, abs=1e-6)
    # one click re-runs inference with it, in the Inference dock
    run_worker = widget.rerun_inference()
    assert run_worker is not None
    qtbot.waitUntil(lambda: session_for(viewer).latest is not None, timeout=60_000)
    assert session_for(viewer).latest.checkpoint.name == outcome.name


def test_the_dock_and_lesionseg_finetune_give_the_same_checkpoint(dock, qtbot, tmp_path):
    """The CLI twin: the same subject, correction, settings and seed give the same weights as the dock."""
    from napari_lesionseg.cli import main

    viewer, widget, folder = dock
    widget.configure(iterations=10)
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    from_dock = widget.outcome.checkpoint
    assert widget.outcome.best_step == 10  # it trained and kept the trained weights, so equal weights mean something
    out = tmp_path / "cli.pt"
    threads = load_checkpoint(from_dock)[1].training["fine_tune"]["threads"]  # sums over other threads differ in the last bit
    corrected = next(folder.glob("*_label-lesion_mask.nii.gz"))  # the dock's corrected mask is this reference
    assert main(["finetune", str(folder), "--corrected", str(corrected), "--checkpoint", PARENT, "--out", str(out),
                 "--steps", "10", "--lr", "0.01", "--batch-size", "2", "--device", "cpu", "--loss", "fbeta",
                 "--beta", "1.5", "--threads", str(threads), "--quiet"]) == 0  # fmt: skip
    dock_weights, cli_weights = load_checkpoint(from_dock)[0].state_dict(), load_checkpoint(out)[0].state_dict()
    assert all(torch.equal(dock_weights[key], cli_weights[key]) for key in dock_weights)



def test_a_second_start_begins_where_the_first_did_not_from_what_it_made(home, make_napari_viewer, make_subject, qtbot):
    """Unpinned, the dock offers the default for the newest subject, which becomes the subject's tuned checkpoint
    once one exists; a second Start after the first must not chain onto it."""
    from napari_lesionseg._napari._subjects import default_for_newest_subject

    viewer = make_napari_viewer()
    for data, kwargs, layer_type in subject_layer_data(load_subject(make_subject(shape=(24, 24, 24)))):
        viewer.add_layer(Layer.create(data, kwargs, layer_type))
    viewer.add_labels(np.array(viewer.layers["reference mask"].data, copy=True), name="corrected mask",
                      metadata=dict(viewer.layers["FLAIR"].metadata))  # fmt: skip
    widget = FineTuneWidget(viewer)
    first = widget._checkpoint.value
    assert first is not None and not widget._picked
    widget.configure(iterations=2, batch_size=2, device="cpu")
    assert widget.start() is not None
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    model, metadata = _parent_checkpoint()  # stands in for what the first Start would have saved
    tuned = CheckpointMetadata(
        "tuned-on-sub-01", metadata.model, "fbeta", 1.5, MODALITIES, list(PATCH),
        training={"fine_tune": {"viewer_subjects": [{"name": "sub-01"}]}},
    )  # fmt: skip
    save_checkpoint(user_checkpoint_dir() / "tuned-on-sub-01.pt", model, tuned)
    widget.refresh_checkpoints()
    assert default_for_newest_subject(viewer, widget._infos).name == "tuned-on-sub-01"  # what an unpinned dock offers
    assert widget._checkpoint.value == first
