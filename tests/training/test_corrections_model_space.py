"""The fine-tune on a correction trains in the checkpoint's model space and measures on the native grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_FINETUNE as TINY
from conftest import synthetic_anatomy

from napari_lesionseg.engine.checkpoints import CheckpointMetadata, read_metadata, save_checkpoint
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.training.corrections import FineTuneRequest, correction_training_subject, fine_tune_on_correction

MODALITIES = ["FLAIR", "T1w"]


def _parent_at_2mm(tmp_path, monkeypatch, seed: int):
    """A tiny FLAIR + T1w network that records training at 2 mm (user checkpoints under tmp_path)."""
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    config = model_config("compact", 2, **TINY)
    torch.manual_seed(seed)
    return save_checkpoint(
        tmp_path / "parent.pt", build_model(config),
        CheckpointMetadata("parent", config, "fbeta", 1.5, MODALITIES, [8, 8, 8], spacing=[2.0, 2.0, 2.0]),
    )  # fmt: skip


def test_the_corrected_subject_goes_into_model_space():
    images, mask = synthetic_anatomy((24, 20, 20), seed=3)
    subject = correction_training_subject(
        {m: images[m] for m in MODALITIES}, mask, spacing=(1.0, 1.0, 1.0), model_spacing=(2.0, 2.0, 2.0)
    )
    assert subject.image.shape == (2, 12, 10, 10) and subject.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert subject.mask.sum() * 8 == pytest.approx(mask.sum(), rel=0.35)  # the lesions stay, at 8 mm^3 a voxel
    same = correction_training_subject({m: images[m] for m in MODALITIES}, mask, spacing=(2.0, 2.0, 2.0), model_spacing=(2.0, 2.0, 2.0))
    assert same.image.shape == (2, 24, 20, 20)


def test_fine_tune_records_model_space_data_and_scores_on_the_native_grid(tmp_path, monkeypatch):
    parent = _parent_at_2mm(tmp_path, monkeypatch, seed=0)
    images, mask = synthetic_anatomy((24, 24, 12), seed=3)
    request = FineTuneRequest(
        checkpoint=parent, images={m: images[m] for m in MODALITIES}, mask=mask, spacing=(1.0, 1.0, 2.0),
        subject_name="sub-07", steps=2, lr=1e-3, device="cpu", out_dir=tmp_path / "out",
    )  # fmt: skip
    outcome = fine_tune_on_correction(request)
    assert outcome.before and outcome.after is not None and 0 <= outcome.after["dsc"] <= 1
    metadata = read_metadata(outcome.checkpoint)
    assert metadata.spacing == [2.0, 2.0, 2.0]
    (record,) = metadata.training["fine_tune"]["viewer_subjects"]
    assert record["spacing_mm"] == pytest.approx([2.0, 2.0, 2.0]) and record["shape"] == [12, 12, 12]


def test_the_before_after_scores_are_those_of_the_prediction_the_user_sees(tmp_path, monkeypatch):
    from napari_lesionseg.engine.predict import predict
    from napari_lesionseg.training.corrections import _evaluation_settings
    from napari_lesionseg.training.data import native_geometry
    from napari_lesionseg.training.validation import score

    parent = _parent_at_2mm(tmp_path, monkeypatch, seed=1)
    images, mask = synthetic_anatomy((24, 24, 12), seed=3)
    images = {m: images[m] for m in MODALITIES}
    request = FineTuneRequest(
        checkpoint=parent, images=images, mask=mask, spacing=(1.0, 1.0, 2.0), subject_name="sub-07", steps=1,
        lr=1e-3, device="cpu", out_dir=tmp_path / "out",
    )  # fmt: skip
    seen = predict(images, parent, _evaluation_settings(request), geometry=native_geometry(mask.shape, (1.0, 1.0, 2.0)))
    on_the_arrays_grid = predict(images, parent, _evaluation_settings(request))
    assert seen.model_space.resampled and not np.array_equal(on_the_arrays_grid.probability, seen.probability)
    outcome = fine_tune_on_correction(request)
    assert outcome.before == pytest.approx(score(seen.probability, mask != 0, (1.0, 1.0, 2.0)))
