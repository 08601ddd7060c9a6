"""Check subjects: scored before and after a fine-tune, never trained on, refused when also trained on."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_FINETUNE as TINY
from conftest import write_subject

from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.training.correction_checks import CHECK_KEYS, checked_rows, load_check_subjects, measure_subjects

MODALITIES = ["FLAIR", "T1w", "T2w", "PDw"]


def _network(bias: float) -> tuple[torch.nn.Module, CheckpointMetadata]:
    """A tiny network whose output bias makes it say lesion everywhere (> 0) or nowhere (< 0)."""
    config = model_config("compact", 4, **TINY)
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():
        model.classifier.bias.fill_(bias)
    return model, CheckpointMetadata("tiny", config, "fbeta", 1.5, MODALITIES, [8, 8, 8])


def test_a_network_is_scored_on_each_check_subject_against_its_mask(tmp_path):
    folders = [write_subject(tmp_path / "checks", name, shape=(16, 16, 16), seed=i) for i, name in enumerate(("sub-a", "sub-b"))]
    subjects = load_check_subjects([tmp_path / "checks"])
    assert [s.name for s in subjects] == ["sub-a", "sub-b"] and folders
    settings = InferenceSettings(overlap=0.0, tta="none", device="cpu", uncertainty=False, stream_partial=False)
    nowhere = measure_subjects(_network(-20.0), subjects, settings)
    everywhere = measure_subjects(_network(20.0), subjects, settings)
    assert set(nowhere) == {"sub-a", "sub-b"} and set(nowhere["sub-a"]) == set(CHECK_KEYS)
    assert nowhere["sub-a"]["dsc"] == 0.0 and nowhere["sub-a"]["n_lesions_pred"] == 0 and nowhere["sub-a"]["ppv"] is None
    assert 0.0 < everywhere["sub-a"]["dsc"] < 0.5 and everywhere["sub-a"]["sensitivity"] == 1.0
    rows = checked_rows(nowhere, everywhere)
    assert [row[0] for row in rows] == ["sub-a", "sub-b", "mean"] and rows[0][1] == "0.000"


def test_a_subject_both_trained_on_and_checked_is_refused(tmp_path):
    folder = write_subject(tmp_path, "sub-01", shape=(16, 16, 16))
    with pytest.raises(InvalidInputError, match="both trained on and checked"):
        load_check_subjects([folder], training=[tmp_path])
    write_subject(tmp_path / "nomask", "sub-02", shape=(16, 16, 16), with_mask=False)
    with pytest.raises(InvalidInputError, match="no lesion mask"):
        load_check_subjects([tmp_path / "nomask"])
