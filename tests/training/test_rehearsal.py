"""Rehearsed generator subjects: the checkpoint's channels, the corrected subject's inputs, one scale, repeatable."""

from __future__ import annotations

import numpy as np

from napari_lesionseg.training.rehearsal import REHEARSAL_SEED, rehearsal_subjects

CHANNELS = ["FLAIR", "T1w", "T2w", "PDw", "T1c"]
OPTIONAL = ["T1w", "T2w", "PDw", "T1c"]


def _subjects(count=1, present=("FLAIR", "T1w"), spacing=(6.0, 6.0, 6.0)):
    return rehearsal_subjects(count, modalities=CHANNELS, optional=OPTIONAL, present=present, spacing=spacing)


def test_rehearsed_subjects_have_the_checkpoints_channels_with_only_the_corrected_subjects_inputs():
    (subject,) = _subjects()
    assert subject.name == f"generator-{REHEARSAL_SEED}" and subject.spacing == (6.0, 6.0, 6.0)
    assert subject.image.shape == (len(CHANNELS), *subject.mask.shape)
    flair, t1w, *absent = subject.image
    assert flair.std() > 0 and t1w.std() > 0 and not np.array_equal(flair, t1w)
    assert all(not np.any(channel) for channel in absent)  # fed as background, as inference feeds a missing input
    assert subject.mask.any() and subject.mask.dtype == bool


def test_the_same_request_rehearses_the_same_subjects_and_each_is_another_patient():
    first, second = _subjects(2)
    again, _ = _subjects(2)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
    assert second.name == f"generator-{REHEARSAL_SEED + 1}" and not np.array_equal(first.mask, second.mask)


def test_none_are_drawn_when_asked_for_none_or_on_an_anisotropic_grid():
    assert _subjects(0) == []
    assert _subjects(1, spacing=(6.0, 1.0, 1.0)) == []  # a patch must hold one scale


def test_a_fine_tune_asked_to_rehearse_does_and_records_it(tmp_path, monkeypatch):
    import torch
    from conftest import TINY_FINETUNE, synthetic_anatomy

    from napari_lesionseg.engine.checkpoints import CheckpointMetadata, load_checkpoint, save_checkpoint
    from napari_lesionseg.models import build_model, model_config
    from napari_lesionseg.training.corrections import FineTuneRequest, fine_tune_on_correction

    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    config = model_config("compact", 2, **TINY_FINETUNE)
    torch.manual_seed(0)
    parent = tmp_path / "parent.pt"
    save_checkpoint(parent, build_model(config), CheckpointMetadata(
        "parent", config, "fbeta", 1.5, ["FLAIR", "T1w"], [8, 8, 8], spacing=[6.0, 6.0, 6.0]))
    images, mask = synthetic_anatomy((16, 16, 16), seed=3)
    request = FineTuneRequest(
        checkpoint=parent, images={m: images[m] for m in ("FLAIR", "T1w")}, mask=mask, spacing=(6.0, 6.0, 6.0),
        subject_name="sub-07", mask_name="corrected mask", steps=2, lr=1e-3, device="cpu",
        out_dir=tmp_path / "out", batch_size=4, eval_every=1, rehearsal=1,
    )  # fmt: skip
    outcome = fine_tune_on_correction(request)
    assert outcome.rehearsed == [f"generator-{REHEARSAL_SEED}"] and outcome.replayed == []
    record = load_checkpoint(outcome.checkpoint)[1].training["fine_tune"]
    assert record["rehearsed"] == outcome.rehearsed and record["settings"]["rehearsal"] == 1
