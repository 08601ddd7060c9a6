"""`lesionseg predict` on the scans clinicians have: mixed grids, thick slices, FLAIR alone, --beta.

Real NIfTI files and real tiny networks (trained here with `lesionseg train` where the test needs a
checkpoint of a modality subset); they check geometry and choice of checkpoint, not accuracy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET, make_affine, write_subject

from napari_lesionseg.cli import main
from napari_lesionseg.data.intensity import NORMALIZATION
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, read_metadata, save_checkpoint, user_checkpoint_dir
from napari_lesionseg.models import build_model, model_config

TINY_TRAIN = [
    "--model-param", "growth_rate=2", "--model-param", "initial_features=4", "--model-param", "dense_blocks_down=1",
    "--model-param", "layers_per_block=1", "--model-param", "multiscale_features=2",
    "--model-param", "bottleneck_factor=1", "--model-param", "input_stride2=false", "--patch-size", "8",
]  # fmt: skip


def _predict(*args: object) -> int:
    return main(["predict", *map(str, args), "--device", "cpu", "--no-tta"])


def _mixed_subject(root: Path, t1_origin=(-10.0, -12.0, -9.0)) -> Path:
    """A 2-D FLAIR (3 mm axial slices) beside a 3-D 1 mm T1w of the same head field of view."""
    folder = write_subject(root, shape=(20, 24, 6), affine=make_affine((1.0, 1.0, 3.0)), modalities=("FLAIR",), with_mask=False)
    other = write_subject(root / "t1", shape=(20, 24, 18), affine=make_affine(origin=t1_origin), modalities=("T1w",), with_mask=False)
    (other / "sub-01_T1w.nii.gz").replace(folder / "sub-01_T1w.nii.gz")
    return folder


@pytest.fixture
def flair_t1_checkpoint(tmp_path: Path) -> Path:
    config = model_config("compact", in_channels=2, **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        name="tiny", model=config, loss="fbeta", beta=1.5, modalities=["FLAIR", "T1w"], patch_size=[8, 8, 8],
        normalization=dict(NORMALIZATION), spacing=[2.0, 2.0, 2.0],
    )  # fmt: skip
    return save_checkpoint(tmp_path / "tiny.pt", build_model(config), metadata)


def test_mixed_grids_give_one_note_and_a_mask_on_the_flair_grid(tmp_path, flair_t1_checkpoint, capsys):
    folder = _mixed_subject(tmp_path / "data")
    out = tmp_path / "mask.nii.gz"
    assert _predict(folder, "--checkpoint", flair_t1_checkpoint, "--mask-out", out, "--prob-out", tmp_path / "p.nii.gz") == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "resampled T1w" in line]
    assert len(notes) == 1 and "onto the FLAIR grid (1x1x3 mm, 20x24x6)" in notes[0]  # the file's axis order
    assert "ran in the model's space" in err and "lesion volume" in err
    flair = nib.load(folder / "sub-01_FLAIR.nii.gz")
    for written in (out, tmp_path / "p.nii.gz"):
        image = nib.load(written)
        assert image.shape == flair.shape
        np.testing.assert_array_equal(image.affine, flair.affine)


def test_the_old_resample_flag_is_still_accepted(tmp_path, flair_t1_checkpoint):
    folder = _mixed_subject(tmp_path / "data")
    assert _predict(folder, "--checkpoint", flair_t1_checkpoint, "--mask-out", tmp_path / "m.nii.gz", "--resample", "--quiet") == 0


def test_volumes_that_do_not_overlap_are_refused_naming_both_files(tmp_path, flair_t1_checkpoint, capsys):
    folder = _mixed_subject(tmp_path / "data", t1_origin=(150.0, -12.0, -9.0))
    assert _predict(folder, "--checkpoint", flair_t1_checkpoint, "--mask-out", tmp_path / "m.nii.gz") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lesionseg predict: error:")
    assert "sub-01_T1w.nii.gz" in err and "sub-01_FLAIR.nii.gz" in err and "does not overlap" in err
    assert not (tmp_path / "m.nii.gz").exists()


@pytest.fixture(scope="module")
def subset_checkpoints(tmp_path_factory) -> Path:
    """Tiny trained networks: beta 1.5 on FLAIR alone and on FLAIR + T1w (user's), beta 3 on FLAIR + T1w (bundled)."""
    root = tmp_path_factory.mktemp("subsets")
    for seed in (1, 2):
        write_subject(root / "train", name=f"sub-0{seed}", shape=(16, 16, 16), seed=seed)
    home = root / "home"
    trained = (
        (home / "checkpoints", "flair_only", "FLAIR", "1.5"), (home / "checkpoints", "flair_t1w", "FLAIR,T1w", "1.5"),
        (root / "bundled", "fbeta_3.0", "FLAIR,T1w", "3"),
    )  # fmt: skip
    for folder, name, modalities, beta in trained:
        args = ["train", "--data", str(root / "train"), "--out", str(folder / f"{name}.pt"), "--modalities", modalities,
                "--loss", "fbeta", "--beta", beta, "--max-steps", "2", "--quiet", "--seed", "1", *TINY_TRAIN]  # fmt: skip
        assert main(args) == 0
    return home


@pytest.fixture
def subset_home(subset_checkpoints, monkeypatch) -> Path:
    """The tiny networks as the user's and the bundled checkpoints (the shipped family stays out of these tests)."""
    from napari_lesionseg.engine import checkpoints

    monkeypatch.setenv("LESIONSEG_HOME", str(subset_checkpoints))
    monkeypatch.setattr(checkpoints, "BUNDLED_DIR", subset_checkpoints.parent / "bundled")
    return subset_checkpoints


def test_a_flair_only_subject_runs_with_the_flair_only_checkpoint_picked_by_beta(tmp_path, subset_home, capsys):
    assert read_metadata(user_checkpoint_dir() / "flair_only.pt").spacing == [1.0, 1.0, 1.0]  # its training data's
    folder = write_subject(tmp_path, shape=(18, 16, 7), affine=make_affine((1.0, 1.0, 2.5)), modalities=("FLAIR",))
    out = tmp_path / "mask.nii.gz"
    assert _predict(folder, "--beta", "1.5", "--mask-out", out) == 0
    err = capsys.readouterr().err
    assert "ran in the model's space" in err
    flair = nib.load(folder / "sub-01_FLAIR.nii.gz")
    mask = nib.load(out)
    assert mask.shape == flair.shape and np.array_equal(mask.affine, flair.affine)


def test_beta_picks_the_checkpoint_using_the_most_of_the_inputs(tmp_path, subset_home):
    from napari_lesionseg.data.subject import load_subject
    from napari_lesionseg.engine.catalog import pick_by_beta, runnable_first
    from napari_lesionseg.engine.checkpoints import list_checkpoints

    infos = list_checkpoints()
    both = load_subject(write_subject(tmp_path, shape=(12, 12, 12), modalities=("FLAIR", "T1w")))
    assert pick_by_beta(infos, 1.5, both.modalities).name == "flair_t1w"
    assert pick_by_beta(infos, 1.5, ("FLAIR",)).name == "flair_only"
    order = runnable_first(infos, ("FLAIR",))
    runnable = [info.name for info, missing in order if not missing]
    assert runnable == ["flair_only"]
    needs = {info.name: missing for info, missing in order}
    assert needs["flair_t1w"] == ["T1w"] and needs["fbeta_3.0"] == ["T1w"]


def test_beta_picks_a_fine_tuned_checkpoint_only_for_its_own_subject(tmp_path, subset_home, monkeypatch):
    """One patient's fine-tune is not every patient's model (as in the Inference dock)."""
    from napari_lesionseg.engine.catalog import pick_by_beta
    from napari_lesionseg.engine.checkpoints import list_checkpoints, load_checkpoint, save_checkpoint

    home = tmp_path / "home"
    shutil.copytree(subset_home, home)
    monkeypatch.setenv("LESIONSEG_HOME", str(home))
    model, metadata = load_checkpoint(home / "checkpoints" / "flair_only.pt")
    metadata.name, metadata.parent = "flair_only_ft-sub-07", "flair_only"
    metadata.training = {**(metadata.training or {}), "fine_tune": {"viewer_subjects": [{"name": "sub-07"}]}}
    save_checkpoint(home / "checkpoints" / "aaa_flair_only_ft-sub-07.pt", model, metadata)  # listed first
    infos = list_checkpoints()
    assert infos[0].name == "aaa_flair_only_ft-sub-07"
    assert pick_by_beta(infos, 1.5, ("FLAIR",), "sub-07").name == "aaa_flair_only_ft-sub-07"
    assert pick_by_beta(infos, 1.5, ("FLAIR",), "sub-08").name == "flair_only"
    assert pick_by_beta(infos, 1.5, ("FLAIR",)).name == "flair_only"


def test_beta_with_nothing_runnable_lists_what_each_checkpoint_needs(tmp_path, subset_home, capsys):
    folder = write_subject(tmp_path, shape=(12, 12, 12), modalities=("FLAIR",))
    assert _predict(folder, "--beta", "3", "--mask-out", tmp_path / "m.nii.gz") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no checkpoint with beta 3 can run on the inputs given (FLAIR)" in err
    assert "fbeta_3.0 needs FLAIR, T1w" in err
    assert _predict(folder, "--beta", "2.5", "--mask-out", tmp_path / "m.nii.gz") == 2
    assert "no checkpoint has beta 2.5" in capsys.readouterr().err
