"""Lesions only inside the brain: bright scalp, fat and glands outside the skull are never reported."""

from __future__ import annotations

import numpy as np
import torch
from conftest import HEAD_SPACING_MM as SPACING
from conftest import TINY_FCDENSENET, head_radius_mm, make_affine, synthetic_head, write_nifti

from napari_lesionseg.data.intensity import foreground_mask
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.intracranial import intracranial_region, otsu_threshold
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.models import build_model, model_config

SETTINGS = InferenceSettings(patch_size=(8, 8, 8), overlap=0.0, tta="none", device="cpu", uncertainty=False, stream_partial=False)


def test_otsu_cuts_between_the_two_modes():
    values = np.concatenate([np.full(1000, 10.0), np.full(3000, 100.0)]) + np.random.default_rng(1).normal(0, 3, 4000)
    assert 20 < otsu_threshold(values) < 90


def test_the_region_holds_the_brain_and_its_ventricle_but_not_the_scalp():
    flair, r = synthetic_head()
    region = intracranial_region(flair, foreground_mask(flair), (SPACING,) * 3)
    assert region is not None
    assert region[r < 60].all()  # every brain voxel, the dark ventricle included
    assert not region[r >= 69].any()  # no scalp voxel


def test_a_skull_stripped_brain_is_kept_whole():
    flair, r = synthetic_head(scalp=False)
    region = intracranial_region(flair, foreground_mask(flair), (SPACING,) * 3)
    assert region is not None and region[r < 60].all()


def test_a_larger_piece_below_does_not_cost_the_brain():
    """A field of view down to the shoulders: a tissue block larger than the brain, cut from it by the erosion."""
    flair, r = synthetic_head(scalp=False)
    body = np.full((40, *flair.shape[1:]), 100.0, np.float32)  # 4.5 L against the brain's 0.9 L
    wide = np.concatenate([body, np.zeros((4, *flair.shape[1:]), np.float32), flair])
    centre = flair.shape[1] // 2
    wide[40:52, centre, centre] = 100.0  # a cord one voxel thin joins them, so they are one head foreground
    region = intracranial_region(wide, foreground_mask(wide), (SPACING,) * 3)
    assert region is not None and region[44:][r < 60].all()


def test_a_slab_of_the_head_still_leaves_the_scalp_out():
    """A 2-D protocol covering 66 mm of the head: the brain and the scalp both reach the slab's faces."""
    flair, r = synthetic_head()
    centre = flair.shape[0] // 2
    slab = slice(centre - 11, centre + 11)
    region = intracranial_region(flair[slab], foreground_mask(flair[slab]), (SPACING,) * 3)
    assert region is not None
    assert region[r[slab] < 60].all() and not region[r[slab] >= 69].any()


def test_no_region_where_no_head_could_be():
    small = np.random.default_rng(2).uniform(50, 100, (20, 20, 20)).astype(np.float32)  # 8 mL at 1 mm
    assert intracranial_region(small, small > 0, (1.0, 1.0, 1.0)) is None
    assert intracranial_region(np.zeros((30, 30, 30), np.float32), np.zeros((30, 30, 30), bool), (SPACING,) * 3) is None


def _everywhere() -> tuple[torch.nn.Module, CheckpointMetadata]:
    """A tiny FLAIR network whose output bias makes it call every voxel it sees a lesion."""
    config = model_config("compact", in_channels=1, **TINY_FCDENSENET)
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():
        model.classifier.bias.fill_(30.0)
    return model, CheckpointMetadata("everywhere", config, "fbeta", 1.5, ["FLAIR"], [8, 8, 8], spacing=[SPACING] * 3)


def test_predict_reports_no_lesion_outside_the_brain_unless_asked(tmp_path):
    flair, r = synthetic_head()
    write_nifti(tmp_path / "sub-01" / "sub-01_FLAIR.nii.gz", flair, make_affine(spacing=(SPACING,) * 3))
    subject = load_subject(tmp_path / "sub-01")
    scalp = head_radius_mm() >= 69  # symmetric about the centre, so the same in any voxel order
    brain = head_radius_mm() < 60

    result = predict(subject, _everywhere(), SETTINGS)
    assert result.mask[brain].all() and not result.mask[scalp].any()
    assert result.probability[scalp].max() == 0.0

    anywhere = predict(subject, _everywhere(), InferenceSettings(**{**SETTINGS.__dict__, "brain_only": False}))
    assert anywhere.mask[scalp & (flair > 100)].all()  # the network's answer, where it is not limited
