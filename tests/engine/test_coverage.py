"""An input that covers less of the head than the FLAIR (a raw T1w with fewer slices): no lesion beyond it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET, make_affine, write_nifti

from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import LesionSegWarning
from napari_lesionseg.models import build_model, model_config

SETTINGS = InferenceSettings(patch_size=(8, 8, 8), overlap=0.0, tta="none", device="cpu", uncertainty=False, stream_partial=False)


def _everywhere(modalities: tuple[str, ...]) -> tuple[torch.nn.Module, CheckpointMetadata]:
    """A tiny network whose output bias makes it call every voxel it sees a lesion."""
    config = model_config("compact", in_channels=len(modalities), **TINY_FCDENSENET)
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():
        model.classifier.bias.fill_(30.0)
    return model, CheckpointMetadata("everywhere", config, "fbeta", 1.5, list(modalities), [8, 8, 8], spacing=[1.0, 1.0, 1.0])


def _subject(tmp_path, t1w_slices: int):
    """FLAIR on 16x16x24 (RAS, 1 mm); a T1w of the same session covering its lowest `t1w_slices` slices."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "sub-01"
    write_nifti(folder / "sub-01_FLAIR.nii.gz", rng.uniform(50, 100, (16, 16, 24)).astype(np.float32), make_affine())
    write_nifti(folder / "sub-01_T1w.nii.gz", rng.uniform(50, 100, (16, 16, t1w_slices)).astype(np.float32), make_affine())
    return load_subject(folder)


def test_no_lesion_is_reported_where_a_required_input_is_missing(tmp_path):
    subject = _subject(tmp_path, t1w_slices=12)
    with pytest.warns(LesionSegWarning, match="T1w covers 50%"):
        result = predict(subject, _everywhere(("FLAIR", "T1w")), SETTINGS)
    mask = result.mask  # canonical (S, P, L): the T1w covers S slices 0-11
    assert mask[12:].sum() == 0 and result.probability[12:].max() == 0.0
    assert mask[:11].mean() > 0.9  # inside its coverage the network's answer stands
    assert any("T1w covers 50%" in message and "no lesion is reported" in message for message in result.messages)


def test_inputs_covering_the_whole_field_of_view_change_nothing(tmp_path):
    subject = _subject(tmp_path, t1w_slices=24)
    result = predict(subject, _everywhere(("FLAIR", "T1w")), SETTINGS)
    assert result.mask.all() and not any("covers" in message for message in result.messages)
    flair_only = predict(subject, _everywhere(("FLAIR",)), SETTINGS)  # the T1w is not an input: it limits nothing
    assert flair_only.mask.all()


def test_an_optional_input_over_part_of_the_field_of_view_is_noted_not_limiting(tmp_path):
    subject = _subject(tmp_path, t1w_slices=12)
    model, metadata = _everywhere(("FLAIR", "T1w"))
    metadata = dataclasses.replace(metadata, optional_modalities=["T1w"])
    with pytest.warns(LesionSegWarning, match="T1w covers 50% of the FLAIR's field of view: beyond it the network runs without it"):
        result = predict(subject, (model, metadata), SETTINGS)
    assert result.mask[12:].mean() > 0.9  # the FLAIR alone decides there
