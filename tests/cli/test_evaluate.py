"""`lesionseg evaluate` on real NIfTI files: one subject, folder mode, and the errors users will meet."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm
from conftest import make_affine, write_nifti
from scipy import ndimage

from napari_lesionseg.cli import main
from napari_lesionseg.evaluation.metrics import METRIC_KEYS, compute_metrics

SPACING = (1.0, 1.2, 2.0)  # along the stored array axes
SHAPE = (16, 18, 12)


def _arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = ndimage.binary_dilation(rng.random(SHAPE) < 0.02)
    prob = np.clip(ndimage.gaussian_filter(gt.astype(float), 1.0) + rng.normal(0, 0.1, SHAPE), 0, 1)
    prob[rng.random(SHAPE) < 0.5] = 0.0
    prob = prob.astype(np.float32)
    return prob >= 0.5, gt, prob


def _write_case(folder: Path, subject: str, seed: int, affine=None) -> dict[str, Path]:
    pred, gt, prob = _arrays(seed)
    affine = make_affine(SPACING, axcodes="LPS") if affine is None else affine
    return {
        "pred": write_nifti(folder / "out" / f"{subject}_mask.nii.gz", pred.astype(np.uint8), affine),
        "prob": write_nifti(folder / "out" / f"{subject}_prob.nii.gz", prob, affine),
        "gt": write_nifti(folder / "data" / subject / f"{subject}_label-lesion_mask.nii.gz", gt.astype(np.uint8), affine),
    }


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class TestOneSubject:
    def test_json_matches_the_engine_and_scikit_learn(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=0)
        code, out, _ = _run(capsys, "--pred", files["pred"], "--gt", files["gt"], "--prob", files["prob"], "--json")
        assert code == 0
        result = json.loads(out)
        pred, gt, prob = _arrays(0)
        expected = compute_metrics(pred, gt, spacing=SPACING, prob=prob)  # metrics do not depend on orientation
        for key in METRIC_KEYS:
            assert result[key] == pytest.approx(expected[key], rel=1e-6), key
        assert result["apr"] == pytest.approx(skm.average_precision_score(gt.ravel(), prob.ravel()), rel=1e-6)
        assert sorted(result["spacing"]) == pytest.approx(sorted(SPACING))
        assert result["files"]["prob"] == str(files["prob"])

    def test_table_without_probability_map(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=1)
        code, out, _ = _run(capsys, "--pred", files["pred"], "--gt", files["gt"])
        assert code == 0
        rows = dict(line.split(maxsplit=1) for line in out.splitlines())
        assert rows["apr"] == "null (no probability map given)"
        assert {"dsc", "ltpr", "lfpr", "hd95_mm", "volume_gt_ml", "n_lesions_pred"} <= rows.keys()
        assert float(rows["dsc"]) == pytest.approx(skm.f1_score(_arrays(1)[1].ravel(), _arrays(1)[0].ravel()), rel=1e-5)
        value_columns = {len(line) - len(line.split(maxsplit=1)[1]) for line in out.splitlines()}
        assert len(value_columns) == 1  # an aligned two-column table

    def test_threshold_turns_a_probability_map_into_the_prediction(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=2)
        _, from_mask, _ = _run(capsys, "--pred", files["pred"], "--gt", files["gt"], "--json")
        code, from_prob, _ = _run(capsys, "--pred", files["prob"], "--threshold", "0.5", "--gt", files["gt"], "--json")
        assert code == 0
        assert {k: v for k, v in json.loads(from_prob).items() if k != "files"} == {
            k: v for k, v in json.loads(from_mask).items() if k != "files"
        }

    def test_lesion_table_csv(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=3)
        table = tmp_path / "lesions.csv"
        code, out, _ = _run(capsys, "--pred", files["pred"], "--gt", files["gt"], "--prob", files["prob"], "--lesions", table, "--json")
        assert code == 0
        rows = list(csv.DictReader(table.open()))
        result = json.loads(out)
        assert sum(r["source"] == "reference" for r in rows) == result["n_lesions_gt"]
        assert sum(r["status"] == "FP" for r in rows) == result["n_lesions_fp"]
        assert sum(float(r["volume_ml"]) for r in rows if r["source"] == "reference") == pytest.approx(result["volume_gt_ml"])
        assert all(0.0 <= float(r["max_prob"]) <= 1.0 and r["world_x_mm"] for r in rows)

    def test_empty_masks_give_nulls_with_reasons(self, tmp_path, capsys):
        empty = np.zeros(SHAPE, np.uint8)
        pred = write_nifti(tmp_path / "pred.nii.gz", empty)
        gt = write_nifti(tmp_path / "gt.nii.gz", empty)
        code, out, _ = _run(capsys, "--pred", pred, "--gt", gt, "--json")
        result = json.loads(out)
        assert code == 0 and result["dsc"] == 1.0 and result["hd95_mm"] == 0.0
        assert result["ltpr"] is None and result["notes"]["ltpr"] == "no reference lesions"


class TestErrors:
    def test_different_grids_name_both_files(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=0)
        shifted = write_nifti(tmp_path / "shifted.nii.gz", _arrays(0)[0].astype(np.uint8), make_affine(SPACING, origin=(0, 0, 5), axcodes="LPS"))
        code, _, err = _run(capsys, "--pred", shifted, "--gt", files["gt"])
        assert code == 2
        assert "shifted.nii.gz" in err and "sub-01_label-lesion_mask.nii.gz" in err and "same voxel grid" in err

    def test_different_shapes(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=0)
        small = write_nifti(tmp_path / "small.nii.gz", np.zeros((4, 4, 4), np.uint8), make_affine(SPACING, axcodes="LPS"))
        code, _, err = _run(capsys, "--pred", small, "--gt", files["gt"])
        assert code == 2 and "small.nii.gz" in err

    def test_probability_map_as_mask_without_threshold(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=0)
        code, _, err = _run(capsys, "--pred", files["prob"], "--gt", files["gt"])
        assert code == 2 and "sub-01_prob.nii.gz" in err and "hreshold" in err

    def test_probabilities_outside_0_1(self, tmp_path, capsys):
        files = _write_case(tmp_path, "sub-01", seed=0)
        logits = write_nifti(tmp_path / "logits.nii.gz", np.full(SHAPE, 3.5, np.float32), make_affine(SPACING, axcodes="LPS"))
        code, _, err = _run(capsys, "--pred", files["pred"], "--gt", files["gt"], "--prob", logits)
        assert code == 2 and "logits.nii.gz" in err and "[0, 1]" in err

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            ([], "--pred"),
            (["--pred", "a.nii.gz"], "--gt"),
            (["--pred", "a.nii.gz", "--gt", "b.nii.gz", "--pred-dir", "."], "either"),
            (["--gt-dir", "."], "--pred-dir"),
            (["--pred", "a.nii.gz", "--gt", "b.nii.gz", "--csv", "m.csv"], "--csv does not apply"),
            (["--pred-dir", ".", "--gt-dir", ".", "--lesions", "l.csv"], "--lesions does not apply"),
        ],
    )
    def test_mode_errors(self, capsys, argv, message):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and message in err


class TestFolderMode:
    def test_csv_with_mean_std_and_unmatched_subjects(self, tmp_path, capsys):
        for seed, subject in enumerate(("sub-01", "sub-02", "sub-03")):
            _write_case(tmp_path, subject, seed)
        (tmp_path / "out" / "sub-03_mask.nii.gz").unlink()  # reference without prediction
        write_nifti(tmp_path / "out" / "sub-09_mask.nii.gz", np.zeros(SHAPE, np.uint8))  # prediction without reference
        table = tmp_path / "metrics.csv"
        argv = ["--pred-dir", tmp_path / "out", "--gt-dir", tmp_path / "data", "--prob-dir", tmp_path / "out", "--csv", table]
        code, out, err = _run(capsys, *argv)
        assert code == 0
        assert "sub-09" in err and "sub-03" in err
        assert "subjects" in out and "±" in out
        rows = {r["subject"]: r for r in csv.DictReader(table.open())}
        assert list(rows) == ["sub-01", "sub-02", "mean", "std", "n"]
        dsc = [compute_metrics(*_arrays(seed)[:2], spacing=SPACING)["dsc"] for seed in (0, 1)]
        assert float(rows["sub-02"]["dsc"]) == pytest.approx(dsc[1], rel=1e-6)
        assert float(rows["mean"]["dsc"]) == pytest.approx(np.mean(dsc), rel=1e-6)
        assert float(rows["std"]["dsc"]) == pytest.approx(np.std(dsc, ddof=1), rel=1e-6)
        assert rows["n"]["apr"] == "2" and float(rows["sub-01"]["apr"]) > 0

        code, out, _ = _run(capsys, *argv, "--json", "--quiet")
        report = json.loads(out)
        assert [s["subject"] for s in report["subjects"]] == ["sub-01", "sub-02"]
        assert report["unmatched"] == {"reference": ["sub-09"], "prediction": ["sub-03"], "probability map": []}
        assert report["mean"]["dsc"] == pytest.approx(np.mean(dsc), rel=1e-6)

    def test_ambiguous_files_ask_for_a_pattern(self, tmp_path, capsys):
        _write_case(tmp_path, "sub-01", seed=0)
        write_nifti(tmp_path / "out" / "sub-01_other_mask.nii.gz", np.zeros(SHAPE, np.uint8))
        code, _, err = _run(capsys, "--pred-dir", tmp_path / "out", "--gt-dir", tmp_path / "data")
        assert code == 2 and "--pred-pattern" in err and "sub-01_other_mask.nii.gz" in err

    def test_no_matching_subjects(self, tmp_path, capsys):
        _write_case(tmp_path, "sub-01", seed=0)
        code, _, err = _run(capsys, "--pred-dir", tmp_path / "out", "--gt-dir", tmp_path / "out")
        assert code == 2 and "no subject has both" in err
