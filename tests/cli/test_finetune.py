"""`lesionseg finetune`: the dock's fine-tune from the command line (same seed, same checkpoint), its output and errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY_FINETUNE as TINY
from conftest import write_nifti, write_subject

from napari_lesionseg.cli import main
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.data.volumes import load_volume
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, load_checkpoint, save_checkpoint
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.training.corrections import FINE_TUNE_DEFAULTS, FineTuneRequest, fine_tune_on_correction

MODALITIES = ["FLAIR", "T1w", "T2w", "PDw"]
SETTINGS = [
    "--steps", "3", "--eval-every", "2", "--lr", "1e-3", "--batch-size", "2", "--device", "cpu", "--seed", "3",
    "--threads", "1",
]  # fmt: skip


@pytest.fixture
def case(tmp_path, monkeypatch):
    """A tiny parent checkpoint, a subject folder and its corrected mask (the reference minus one lesion)."""
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    config = model_config("compact", 4, **TINY)
    torch.manual_seed(0)
    parent = tmp_path / "parent.pt"
    save_checkpoint(parent, build_model(config), CheckpointMetadata("parent", config, "fbeta", 1.5, MODALITIES, [8, 8, 8]))
    folder = write_subject(tmp_path, "sub-01", shape=(16, 16, 16))
    mask = load_volume(folder / "sub-01_label-lesion_mask.nii.gz", kind="mask").data.copy()
    mask[:, :, :5] = 0
    corrected = write_nifti(tmp_path / "corrected.nii.gz", mask.astype(np.uint8))
    return parent, folder, corrected


def _weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0].state_dict()


def test_cli_and_the_docks_request_give_the_same_checkpoint(case, tmp_path, capsys):
    parent, folder, corrected = case
    out = tmp_path / "cli.pt"
    assert main(["finetune", str(folder), "--corrected", str(corrected), "--checkpoint", str(parent),
                 "--out", str(out), *SETTINGS]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert f"{out}: fine-tuned from 'parent', 3 of 3 steps" in printed.out
    assert "DSC" in printed.out and "before" in printed.out and "held-out DSC" in printed.err
    subject = load_subject(folder)
    dock_request = FineTuneRequest(  # what the Fine-tune dock builds from the same layers and settings
        checkpoint=parent, images={m: subject.images[m].data for m in MODALITIES},
        mask=load_volume(corrected, kind="mask").data, spacing=tuple(subject.geometry.spacing),
        subject_name=subject.name, steps=3, eval_every=2, lr=1e-3, batch_size=2, device="cpu", seed=3, threads=1,
        out_dir=tmp_path / "dock",
    )  # fmt: skip
    dock = fine_tune_on_correction(dock_request)
    cli, headless = _weights(out), _weights(dock.checkpoint)
    assert all(torch.equal(cli[key], headless[key]) for key in cli)
    _, metadata = load_checkpoint(out)
    assert metadata.parent == "parent" and metadata.training["fine_tune"]["lineage"] == ["parent"]
    assert metadata.training["fine_tune"]["settings"]["patience"] == FINE_TUNE_DEFAULTS.patience


def test_defaults_are_the_shared_ones(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {FINE_TUNE_DEFAULTS.steps})" in text and f"(default: {FINE_TUNE_DEFAULTS.lr})" in text


def test_user_errors_are_one_line_naming_the_file(case, tmp_path, capsys):
    parent, folder, corrected = case
    other_grid = write_nifti(tmp_path / "small.nii.gz", np.ones((8, 8, 8), np.uint8))
    base = ["finetune", str(folder), "--checkpoint", str(parent), *SETTINGS]
    assert main([*base, "--corrected", str(other_grid), "--out", str(tmp_path / "a.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "small.nii.gz: not on the grid of sub-01" in err
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"x")
    assert main([*base, "--corrected", str(corrected), "--out", str(taken)]) == 2
    assert "taken.pt: a file is already there" in capsys.readouterr().err
    assert main([*base, "--corrected", str(corrected), "--out", str(tmp_path / "a.pt"), "--patience", "0"]) == 2
    assert "patience must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("given", ["image", "label map"])
def test_an_image_or_label_map_given_as_the_corrected_mask_is_refused(case, tmp_path, capsys, given):
    """The subject's own FLAIR (whole numbers) or labels {0, 3} would be learnt as lesion wherever nonzero."""
    parent, folder, corrected = case
    source = nib.load(folder / "sub-01_FLAIR.nii.gz" if given == "image" else corrected)
    values = np.asarray(source.dataobj)
    values = np.round(np.clip(values, 0, None) * 100) if given == "image" else 3 * values  # a FLAIR in whole numbers
    mask = tmp_path / f"{given.replace(' ', '_')}.nii.gz"
    nib.save(nib.Nifti1Image(values.astype(np.int32), source.affine), mask)
    out = tmp_path / "new.pt"
    assert main(["finetune", str(folder), "--corrected", str(mask), "--checkpoint", str(parent),
                 "--out", str(out), *SETTINGS]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{mask}: holds value(s)" in err and "besides 0 and 1" in err
    assert not out.exists()


def test_a_brain_mask_given_as_the_corrected_mask_is_refused(case, tmp_path, capsys):
    """0/1, on the grid, but 700 mL: no lesion load is that large, a brain mask chosen by mistake is."""
    from conftest import make_affine

    parent, _, _ = case
    folder = write_subject(tmp_path / "coarse", "sub-02", shape=(16, 16, 16), affine=make_affine(spacing=(7.0, 7.0, 7.0)))
    source = nib.load(folder / "sub-02_FLAIR.nii.gz")
    brain = np.zeros(source.shape, np.uint8)
    brain[:, :, :8] = 1  # 2,048 voxels of 343 mm^3
    mask = tmp_path / "brain_mask.nii.gz"
    nib.save(nib.Nifti1Image(brain, source.affine), mask)
    out = tmp_path / "new.pt"
    assert main(["finetune", str(folder), "--corrected", str(mask), "--checkpoint", str(parent),
                 "--out", str(out), *SETTINGS]) == 2  # fmt: skip
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"The corrected mask '{mask}' marks 702 mL as lesion" in line and "brain mask" in line
    assert not out.exists()
