"""The checkpoint fields for real scans: model spacing and optional modalities (old files, checks)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.requirements import (
    check_modalities,
    missing_modalities,
    required_modalities,
    trained_spacing,
)
from napari_lesionseg.errors import CheckpointError
from napari_lesionseg.models import model_config
from napari_lesionseg.training.config import TrainingConfig
from napari_lesionseg.training.data import TrainingSubject
from napari_lesionseg.training.export import model_spacing

MODALITIES = ["FLAIR", "T1w", "T2w"]


def _metadata(**fields) -> CheckpointMetadata:
    config = model_config("compact", in_channels=3, dense_blocks_down=1, layers_per_block=1, patch_size=[8, 8, 8])
    return CheckpointMetadata("tiny", config, "fbeta", 1.5, list(MODALITIES), [8, 8, 8], **fields)


def test_files_written_before_the_fields_read_as_all_required_and_unknown_spacing():
    data = json.loads(_metadata().to_json())
    del data["spacing"], data["optional_modalities"]
    metadata = CheckpointMetadata.from_dict(data)
    assert metadata.spacing is None and metadata.optional_modalities == []
    assert trained_spacing(metadata) is None and required_modalities(metadata) == MODALITIES


def test_spacing_comes_from_the_field_else_from_the_training_record():
    assert trained_spacing(_metadata(spacing=[1.0, 1.0, 3.0])) == (1.0, 1.0, 3.0)
    assert trained_spacing(_metadata(training={"spacing": [2, 2, 2]})) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"spacing": [1.0, 1.0]}, "expected three voxel sizes"),
        ({"spacing": [1.0, -1.0, 1.0]}, "expected three voxel sizes"),
        ({"optional_modalities": ["PDw"]}, "must be some"),
        ({"optional_modalities": list(MODALITIES)}, "must be some"),
    ],
)
def test_inconsistent_fields_are_refused(fields, message):
    with pytest.raises(CheckpointError, match=message):
        dataclasses.replace(_metadata(), **fields).validate()


def test_optional_modalities_may_be_missing_required_ones_may_not():
    metadata = _metadata(optional_modalities=["T2w"])
    assert check_modalities(metadata, ["flair", "T1w"]) == ["flair", "T1w", None]
    assert missing_modalities(metadata, ["FLAIR"]) == ["T1w"]
    with pytest.raises(CheckpointError, match=r"needs the modalities FLAIR, T1w \(optional: T2w\); missing: T1w"):
        check_modalities(metadata, ["FLAIR", "T2w"])


def test_training_records_its_data_spacing_or_its_parents(tmp_path):
    subjects = [TrainingSubject(f"s{i}", None, None, spacing) for i, spacing in enumerate([(1, 1, 3), (1, 1, 1), (1, 2, 3)])]
    config = TrainingConfig(data=[], out=tmp_path / "m.pt")
    assert model_spacing(config, subjects) == [1.0, 1.0, 3.0]
    assert model_spacing(config, []) is None
