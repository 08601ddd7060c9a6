"""Smoke run of the fine-tune benchmark with a tiny network: the report's structure, never its timings."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_FCDENSENET, write_subject

from napari_lesionseg.benchmarks.finetune import run_finetune_benchmark
from napari_lesionseg.cli.bench import format_report
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, save_checkpoint
from napari_lesionseg.models import build_model, model_config


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("finetune-bench")
    folder = write_subject(root, shape=(16, 16, 16))
    config = model_config("compact", 4, input_stride2=False, **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata("tiny", config, "fbeta", 1.5, ["FLAIR", "T1w", "T2w", "PDw"], [8, 8, 8])
    checkpoint = save_checkpoint(root / "tiny.pt", build_model(config), metadata)
    return run_finetune_benchmark(checkpoint=checkpoint, subject_folder=folder, iterations=3)


def test_report_times_each_phase_of_the_fine_tune(report):
    seconds = report["seconds"]
    assert report["iterations"] == 3 and report["checkpoint"] == "tiny" and report["shape"] == [16, 16, 16]
    assert all(seconds[phase] > 0 for phase in ("before", "training", "after"))
    assert seconds["total"] == pytest.approx(seconds["before"] + seconds["training"] + seconds["after"])
    assert 0.0 <= report["dsc_before"] <= 1.0 and 0.0 <= report["dsc_after"] <= 1.0
    assert report["parameters"] > 0
    assert report["precision"].split()[0] in ("bfloat16", "float32")
    assert 0 <= report["skipped_steps"] <= 3
    assert set(report["targets_met"]) == {"training_s", "total_s"}
    assert report["targets_met"]["training_s"] == (seconds["training"] < report["targets"]["training_s_max"])
    json.dumps(report)  # JSON-able


def test_cli_report_names_the_phases(report):
    text = format_report({"finetune": report})
    assert "fine-tune: 3 iterations of tiny" in text and "training" in text and "DSC" in text
