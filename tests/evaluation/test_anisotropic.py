"""Lesion-wise metrics and the lesion table on anisotropic grids: millilitres from the native spacing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET, make_affine, write_nifti, write_subject

from napari_lesionseg.cli import main
from napari_lesionseg.data.intensity import NORMALIZATION
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, load_checkpoint, save_checkpoint
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.evaluation.review import review_masks
from napari_lesionseg.models import build_model, model_config

#: (L, P, S) voxel sizes of the files: thin in-plane voxels and thick axial slices.
SPACING = (0.5, 0.8, 3.0)


def test_evaluate_lesion_table_reports_ml_from_the_files_spacing(tmp_path):
    gt = np.zeros((30, 20, 8), np.uint8)
    gt[2:6, 2:7, 1:3] = 1  # 40 voxels of 1.2 mm^3
    gt[20:25, 10:14, 5:6] = 1  # 20 voxels, missed
    pred = np.zeros_like(gt)
    pred[3:6, 2:7, 1:3] = 1  # 30 voxels, detects the first lesion
    affine = make_affine(SPACING, axcodes="LPS")
    write_nifti(tmp_path / "gt.nii.gz", gt, affine)
    write_nifti(tmp_path / "pred.nii.gz", pred, affine)
    out = tmp_path / "lesions.csv"
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--gt", str(tmp_path / "gt.nii.gz"), "--lesions", str(out)]) == 0
    rows = {(r["source"], r["status"]): r for r in csv.DictReader(out.open())}
    voxel_ml = 0.5 * 0.8 * 3.0 / 1000
    assert float(rows["reference", "TP"]["volume_ml"]) == pytest.approx(40 * voxel_ml)
    assert float(rows["reference", "FN"]["volume_ml"]) == pytest.approx(20 * voxel_ml)
    assert float(rows["prediction", "TP"]["volume_ml"]) == pytest.approx(30 * voxel_ml)


def test_review_of_a_model_space_run_counts_native_voxels(tmp_path):
    affine = make_affine((1.0, 1.0, 3.0))
    subject = load_subject(write_subject(tmp_path, shape=(20, 22, 7), affine=affine, modalities=("FLAIR",)))
    config = model_config("compact", in_channels=1, **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        name="tiny", model=config, loss="fbeta", beta=1.5, modalities=["FLAIR"], patch_size=[8, 8, 8],
        normalization=dict(NORMALIZATION), spacing=[2.0, 2.0, 2.0],
    )  # fmt: skip
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "t.pt", build_model(config), metadata))
    settings = InferenceSettings(tta="none", device="cpu", threshold=0.3)
    result = predict(subject, checkpoint, settings)
    assert result.model_space.resampled and result.mask.any()
    spacing = subject.geometry.spacing
    review = review_masks(result.mask, subject.mask.data != 0, spacing=spacing, prob=result.probability)
    voxel_ml = 3.0 / 1000
    assert review.metrics["volume_pred_ml"] == pytest.approx(result.mask.sum() * voxel_ml)
    assert review.metrics["volume_gt_ml"] == pytest.approx((subject.mask.data != 0).sum() * voxel_ml)
    for lesion in review.lesions:
        assert lesion.volume_ml == pytest.approx(lesion.n_voxels * voxel_ml)
