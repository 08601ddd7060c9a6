"""Smoke run of the inference benchmark at a tiny size: the report's structure, never its timings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_FCDENSENET, write_subject

from napari_lesionseg.benchmarks.inference import TARGETS, run_inference_benchmark
from napari_lesionseg.cli.bench import format_report
from napari_lesionseg.engine.patches import make_grid
from napari_lesionseg.errors import InvalidInputError

PAPER_SHAPE = (8, 16, 12)  # not symmetric, so that a transposed volume would show


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    folder = write_subject(tmp_path_factory.mktemp("bench"), shape=(12, 10, 9))
    return run_inference_benchmark(
        devices=["cpu"],
        presets=("compact",),
        max_patches=4,
        paper_shape=PAPER_SHAPE,
        paper_patch_size=(8, 8, 8),
        model_overrides=TINY_FCDENSENET,
        sample_folder=folder,
    )


def test_report_lists_machine_targets_and_one_entry_per_workload(report):
    assert report["benchmark"] == "inference" and report["targets"] == TARGETS
    assert {"processor", "cpu_count", "torch", "cuda"} <= set(report["machine"])
    assert [(e["workload"], e["model"], e["device"]) for e in report["results"]] == [("sample", "compact", "cpu"), ("paper", "compact", "cpu")]
    json.dumps(report)  # JSON-able, as `lesionseg bench --json` prints it


def test_each_entry_reports_every_stage_and_what_was_measured(report):
    for entry in report["results"]:
        assert set(entry["stages_s"]) == {"io", "normalisation", "extract", "network", "fusion"}
        assert all(seconds >= 0 for seconds in entry["stages_s"].values())
        assert entry["patches_total"] == int(np.prod(entry["grid"]))
        assert entry["predictions_total"] == 4 * entry["patches_total"]
        assert entry["patches_measured"] == int(np.prod(entry["measured_block"])) <= entry["patches_total"]
        assert entry["extrapolated"] == (entry["patches_measured"] < entry["patches_total"])
        assert set(entry["fusion_modes_s"]) >= {"tiling", "uniform", "spline", "gaussian", "all+uncertainty"}
        assert set(entry["targets_met"]) == {"fusion_over_network", "ours_over_monai", "paper_gpu_engine_s"}


def test_paper_workload_uses_the_padded_paper_grid(report):
    paper = report["results"][1]
    assert paper["border"] == "pad" and paper["shape"] == [5, *PAPER_SHAPE]
    assert tuple(paper["grid"]) == make_grid(PAPER_SHAPE, 8, 0.5, "pad").counts
    assert paper["measured_block"] == [2, 2, 2] and paper["extrapolated"]  # a padded block has >= 2 per axis


def test_monai_runs_the_same_work(report):
    for entry in report["results"]:
        monai = entry["monai"]
        assert monai["max_abs_difference"] < 1e-5  # same grid, network and flips: same probabilities
        assert monai["ours_over_monai"] > 0


def test_readable_report(report):
    text = format_report({"inference": report})
    assert "sample / compact / cpu" in text and "ours/MONAI" in text and "extrapolated" in text


def test_a_sample_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="nothing: not a folder"):
        run_inference_benchmark(devices=["cpu"], presets=("compact",), workloads=("sample",), sample_folder=tmp_path / "nothing")
