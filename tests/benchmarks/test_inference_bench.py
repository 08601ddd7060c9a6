"""Smoke runs of the inference benchmark at a tiny size: the report's structure, never its timings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET, write_subject

from napari_lesionseg.benchmarks.inference import TARGETS, run_inference_benchmark
from napari_lesionseg.cli.bench import format_report
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, save_checkpoint
from napari_lesionseg.engine.patches import make_grid
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.models import build_model, model_config

PAPER_SHAPE = (8, 16, 12)  # not symmetric, so that a transposed volume would show
SHAPE_1MM = (12, 18, 10)
TARGET_KEYS = {"fusion_over_network", "ours_over_monai", "ours_over_monai_tuned", "cpu_engine_s", "first_view_s", "paper_gpu_engine_s"}


def _bench(tmp_path_factory, name: str, **options) -> dict:
    root = tmp_path_factory.mktemp(name)
    folder = write_subject(root, shape=(12, 10, 9))
    config = model_config("compact", 4, **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata("tiny", config, "fbeta", 1.5, ["FLAIR", "T1w", "T2w", "PDw"], [8, 8, 8])
    checkpoint = save_checkpoint(root / "tiny.pt", build_model(config), metadata)
    return run_inference_benchmark(
        devices=["cpu"], presets=("compact",), paper_shape=PAPER_SHAPE, paper_patch_size=(8, 8, 8), shape_1mm=SHAPE_1MM,
        model_overrides=TINY_FCDENSENET, sample_folder=folder, accuracy_checkpoint=checkpoint, **options,
    )  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """The fast path as the product runs it, every patch timed."""
    return _bench(tmp_path_factory, "bench")


@pytest.fixture(scope="module")
def extrapolated(tmp_path_factory) -> dict:
    """float32, four patches timed and extrapolated."""
    return _bench(tmp_path_factory, "bench-block", max_patches=4, precision="float32")


def test_report_lists_machine_targets_and_one_entry_per_workload(report):
    assert report["benchmark"] == "inference" and report["targets"] == TARGETS
    assert {"processor", "cpu_count", "torch", "cuda", "native_bfloat16", "load_average"} <= set(report["machine"])
    workloads = [(e["workload"], e["model"], e["device"]) for e in report["results"]]
    assert workloads == [("sample", "compact", "cpu"), ("1mm", "compact", "cpu"), ("paper", "compact", "cpu")]
    json.dumps(report)  # JSON-able, as `lesionseg bench --json` prints it


def test_each_entry_reports_every_stage_and_what_was_measured(report, extrapolated):
    for entry in report["results"] + extrapolated["results"]:
        flips = 1 if entry["workload"] == "1mm" else 4
        assert set(entry["stages_s"]) == {"io", "normalisation", "extract", "network", "fusion"}
        assert all(seconds >= 0 for seconds in entry["stages_s"].values())
        assert entry["patches_total"] == int(np.prod(entry["grid"]))
        assert entry["predictions_total"] == flips * entry["patches_total"]
        assert entry["patches_measured"] == int(np.prod(entry["measured_block"])) <= entry["patches_total"]
        assert entry["extrapolated"] == (entry["patches_measured"] < entry["patches_total"])
        assert set(entry["fusion_modes_s"]) >= {"tiling", "uniform", "spline", "gaussian", "all+uncertainty"}
        assert set(entry["targets_met"]) == TARGET_KEYS


def test_the_fast_path_reports_its_precision_skipping_and_first_view(report):
    for entry in report["results"]:
        assert not entry["extrapolated"]
        assert entry["precision"] in ("bfloat16", "float32") and entry["precision"] in entry["precision_label"]
        assert entry["patches_skipped"] == entry["patches_background"] == entry["monai"]["patches_skipped"]
        view = entry["first_view"]
        assert 0 < view["patches_covering"] <= entry["patches_total"] and view["first_view_s"] > 0
        assert entry["targets_met"]["first_view_s"] is not None


def test_extrapolated_runs_send_every_patch(extrapolated):
    for entry in extrapolated["results"]:
        assert entry["extrapolated"] and entry["patches_skipped"] is None and entry["first_view"] is None
        assert entry["precision"] == "float32"


def test_paper_workload_uses_the_padded_paper_grid(extrapolated):
    paper = extrapolated["results"][2]
    assert paper["border"] == "pad" and paper["shape"] == [5, *PAPER_SHAPE]
    assert tuple(paper["grid"]) == make_grid(PAPER_SHAPE, 8, 0.5, "pad").counts
    assert paper["measured_block"] == [2, 2, 2] and paper["extrapolated"]  # a padded block has >= 2 per axis


def test_monai_runs_the_same_work(report, extrapolated):
    for entry in extrapolated["results"]:  # float32 on both sides: the same probabilities
        assert entry["monai"]["max_abs_difference"] < 1e-5
    for entry in report["results"]:
        monai = entry["monai"]
        assert monai["precision"] == entry["precision"]
        assert monai["max_abs_difference"] < (1e-5 if monai["precision"] == "float32" else 0.02)
        for key in ("ours_s", "ours_all_patches_s", "monai_s", "monai_tuned_s", "monai_fused_s"):
            assert monai[key] > 0, key
        assert monai["ours_over_monai"] == pytest.approx(monai["ours_s"] / monai["monai_s"])


def test_accuracy_of_the_fast_path_on_the_sample_subject(report):
    accuracy = report["accuracy"]
    assert accuracy["checkpoint"] == "tiny" and accuracy["shape"] == report["results"][0]["shape"][1:]
    assert 0 <= accuracy["max_abs_difference_in_head"] <= accuracy["max_abs_difference"] <= 1
    assert 0 <= accuracy["mask_voxels_changed"] <= int(np.prod(accuracy["shape"]))
    assert accuracy["precision"] == report["results"][0]["precision"]


def test_readable_report(report, extrapolated):
    text = format_report({"inference": report})
    assert "sample / compact / cpu" in text and "ours/MONAI tuned" in text and "first view" in text
    assert "accuracy: tiny" in text and "mask voxels changed" in text
    assert "extrapolated" in format_report({"inference": extrapolated})


def test_a_sample_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="nothing: not a folder"):
        run_inference_benchmark(devices=["cpu"], presets=("compact",), workloads=("sample",), sample_folder=tmp_path / "nothing")
