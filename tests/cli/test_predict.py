"""`lesionseg predict` on real NIfTI subjects with a tiny real checkpoint.

The network is randomly initialised: these tests check geometry, file handling and errors, not
segmentation quality.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import HEAD_SPACING_MM, TINY_FCDENSENET, make_affine, synthetic_head, write_nifti, write_subject

from napari_lesionseg.cli import main
from napari_lesionseg.constants import CORE_MODALITIES

SHAPE = (14, 12, 10)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    from napari_lesionseg.engine.checkpoints import CheckpointMetadata, save_checkpoint
    from napari_lesionseg.models import build_model, model_config

    config = model_config("compact", in_channels=len(CORE_MODALITIES), **TINY_FCDENSENET)
    torch.manual_seed(0)
    metadata = CheckpointMetadata(
        name="tiny", model=config, loss="fbeta", beta=1.5, modalities=list(CORE_MODALITIES), patch_size=[8, 8, 8]
    )
    return save_checkpoint(tmp_path / "tiny.pt", build_model(config), metadata)


def _predict(*args: object) -> int:
    return main(["predict", *map(str, args), "--device", "cpu", "--quiet"])


def test_outputs_land_on_the_input_grid_and_affine(tmp_path, checkpoint):
    folder = write_subject(tmp_path / "data", shape=SHAPE, axcodes="LPS")
    out = tmp_path / "out"
    code = _predict(folder, "--checkpoint", checkpoint, "--prob-out", out / "prob.nii.gz", "--mask-out", out / "mask.nii.gz", "--uncertainty-out", out / "unc.nii.gz", "--min-lesion-mm3", 0)
    assert code == 0
    flair = nib.load(folder / "sub-01_FLAIR.nii.gz")
    prob, mask, unc = (nib.load(out / name) for name in ("prob.nii.gz", "mask.nii.gz", "unc.nii.gz"))
    for image in (prob, mask, unc):
        np.testing.assert_array_equal(image.affine, flair.affine)
        assert image.shape == flair.shape
    p, m = prob.get_fdata(), np.asarray(mask.dataobj)
    assert prob.get_data_dtype() == np.float32 and mask.get_data_dtype() == np.uint8
    assert 0 <= p.min() and p.max() <= 1 and set(np.unique(m)) <= {0, 1}
    np.testing.assert_array_equal(m, (p >= 0.5).astype(np.uint8))
    assert unc.get_fdata().min() >= 0


def test_modality_files_give_the_same_result_as_the_folder(tmp_path, checkpoint):
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    assert _predict(folder, "--checkpoint", checkpoint, "--prob-out", tmp_path / "a.nii.gz", "--no-tta") == 0
    files = [f"{m}={folder / f'sub-01_{m}.nii.gz'}" for m in ("T2w", "FLAIR")] + [folder / f"sub-01_{m}.nii.gz" for m in ("PDw", "T1w")]
    assert _predict(*files, "--checkpoint", checkpoint, "--prob-out", tmp_path / "b.nii.gz", "--no-tta") == 0
    a, b = (nib.load(tmp_path / name).get_fdata() for name in ("a.nii.gz", "b.nii.gz"))
    np.testing.assert_array_equal(a, b)


def test_folder_of_subjects_runs_as_a_batch_and_can_be_sharded(tmp_path, checkpoint):
    for name in ("sub-01", "sub-02"):
        write_subject(tmp_path / "data", name=name, shape=SHAPE)
    template = tmp_path / "out" / "{subject}_mask.nii.gz"
    assert _predict(tmp_path / "data", "--checkpoint", checkpoint, "--mask-out", template, "--no-tta") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sub-01_mask.nii.gz", "sub-02_mask.nii.gz"]
    shard = tmp_path / "shard" / "{subject}_mask.nii.gz"
    assert _predict(tmp_path / "data", "--checkpoint", checkpoint, "--mask-out", shard, "--no-tta", "--shard", "1/2") == 0
    assert [p.name for p in (tmp_path / "shard").iterdir()] == ["sub-02_mask.nii.gz"]


def test_under_torchrun_each_process_takes_its_share(tmp_path, checkpoint, monkeypatch):
    for name in ("sub-01", "sub-02", "sub-03"):
        write_subject(tmp_path / "data", name=name, shape=SHAPE)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    template = tmp_path / "out" / "{subject}_mask.nii.gz"
    assert _predict(tmp_path / "data", "--checkpoint", checkpoint, "--mask-out", template, "--no-tta") == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["sub-02_mask.nii.gz"]


def test_batch_without_subject_placeholder_is_refused(tmp_path, checkpoint, capsys):
    for name in ("sub-01", "sub-02"):
        write_subject(tmp_path / "data", name=name, shape=SHAPE)
    assert _predict(tmp_path / "data", "--checkpoint", checkpoint, "--mask-out", tmp_path / "mask.nii.gz") == 2
    assert "{subject}" in capsys.readouterr().err


def test_missing_modality_is_named(tmp_path, checkpoint, capsys):
    folder = write_subject(tmp_path / "data", shape=SHAPE, modalities=("FLAIR", "T1w", "T2w"))
    assert _predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz") == 2
    assert "missing: PDw" in capsys.readouterr().err


def test_a_blank_image_is_refused_by_name(tmp_path, checkpoint, capsys):
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    blank = next(folder.glob("*_T2w.nii.gz"))
    write_nifti(blank, np.zeros(SHAPE, np.float32))
    assert _predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"lesionseg predict: error: {blank}: every voxel of the T2w is 0; an empty image holds nothing to segment"]
    assert not (tmp_path / "m.nii.gz").exists()


def test_a_single_slice_is_refused_not_reported_as_no_lesion(tmp_path, checkpoint, capsys):
    import nibabel as nib

    folder = write_subject(tmp_path / "data", shape=SHAPE)
    for path in folder.glob("*.nii.gz"):
        image = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:, :, 4:5], image.affine), path)  # one axial slice
    assert _predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("holds a single slice (shape (%d, %d, 1)); segmentation needs the whole 3-D scan" % SHAPE[:2])
    assert "_FLAIR.nii.gz: the FLAIR" in line and not (tmp_path / "m.nii.gz").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--overlap", "1.0"], "overlap"), (["--patch-size", "7"], "must be a multiple of"), (["--shard", "2/2"], "--shard"),
     (["--threads", "0"], "--threads must be >= 1")],
)
def test_bad_options_are_clear_errors(tmp_path, checkpoint, capsys, option, message):
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    assert _predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz", *option) == 2
    assert message in capsys.readouterr().err


def test_threads_apply_to_the_run_and_are_restored(tmp_path, checkpoint, monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr("napari_lesionseg.cli.predict._predict_shard", lambda *args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    assert _predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz", "--threads", 1) == 0
    assert seen == [1] and torch.get_num_threads() == before


def test_nothing_to_write_is_refused(tmp_path, checkpoint, capsys):
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    assert _predict(folder, "--checkpoint", checkpoint) == 2
    assert "nothing to write" in capsys.readouterr().err


def test_precision_reaches_the_engine_and_is_reported(tmp_path, checkpoint, capsys):
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    probabilities = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.nii.gz"
        args = ["predict", folder, "--checkpoint", checkpoint, "--prob-out", out, "--device", "cpu", "--precision", precision]
        assert main([str(a) for a in args]) == 0
        assert f"on cpu ({precision})" in capsys.readouterr().err
        probabilities[precision] = nib.load(out).get_fdata()
    difference = np.abs(probabilities["float32"] - probabilities["bfloat16"])
    assert 0 < difference.max() < 0.02  # bfloat16 ran, and stayed close to float32


def test_min_lesion_size_drops_small_components_from_the_mask_only(tmp_path, checkpoint):
    from napari_lesionseg.evaluation.lesion_size import drop_small_lesions

    folder = write_subject(tmp_path / "data", shape=SHAPE)
    out = tmp_path / "out"
    assert _predict(folder, "--checkpoint", checkpoint, "--no-tta", "--prob-out", out / "p.nii.gz") == 0
    values = np.unique(nib.load(out / "p.nii.gz").get_fdata())
    index = int(0.85 * len(values))
    threshold = float(values[index] + values[index + 1]) / 2  # between two values: a mask of scattered blobs
    for volume in (0, 20):
        assert _predict(folder, "--checkpoint", checkpoint, "--no-tta", "--prob-out", out / f"p{volume}.nii.gz",
                        "--mask-out", out / f"m{volume}.nii.gz", "--min-lesion-mm3", volume,
                        "--threshold", threshold) == 0  # fmt: skip
    prob = nib.load(out / "p0.nii.gz").get_fdata()
    np.testing.assert_array_equal(prob, nib.load(out / "p20.nii.gz").get_fdata())
    everything, filtered = (np.asarray(nib.load(out / f"m{v}.nii.gz").dataobj) for v in (0, 20))
    np.testing.assert_array_equal(everything, (prob >= threshold).astype(np.uint8))
    np.testing.assert_array_equal(filtered, drop_small_lesions(everything, (1.0, 1.0, 1.0), 20.0).astype(np.uint8))
    assert 0 < filtered.sum() < everything.sum()  # components on both sides of 20 mm^3


def test_negative_min_lesion_size_is_refused(tmp_path, checkpoint, capsys):
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    assert _predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz", "--min-lesion-mm3", -1) == 2
    assert "minimum lesion size -1.0 mm^3" in capsys.readouterr().err


def test_no_lesion_outside_the_brain_unless_no_brain_only(tmp_path):
    """A network that calls every voxel a lesion, on a head with a bright scalp: the scalp stays clear."""
    from napari_lesionseg.engine.checkpoints import CheckpointMetadata, save_checkpoint
    from napari_lesionseg.models import build_model, model_config

    config = model_config("compact", in_channels=1, **TINY_FCDENSENET)
    model = build_model(config)
    with torch.no_grad():
        model.classifier.bias.fill_(30.0)
    metadata = CheckpointMetadata(
        name="everywhere", model=config, loss="fbeta", beta=1.5, modalities=["FLAIR"], patch_size=[8, 8, 8],
        spacing=[HEAD_SPACING_MM] * 3,
    )
    everywhere = save_checkpoint(tmp_path / "everywhere.pt", model, metadata)
    flair, radius = synthetic_head()
    write_nifti(tmp_path / "sub-01" / "sub-01_FLAIR.nii.gz", flair, make_affine(spacing=(HEAD_SPACING_MM,) * 3))
    scalp = (radius >= 69) & (flair > 100)
    for option, name in (("--brain-only", "brain"), ("--no-brain-only", "anywhere")):
        out = tmp_path / f"{name}.nii.gz"
        assert _predict(tmp_path / "sub-01", "--checkpoint", everywhere, "--mask-out", out, "--no-tta", option) == 0
        mask = np.asarray(nib.load(out).dataobj) > 0
        assert mask[radius < 60].all()
        assert mask[scalp].all() if name == "anywhere" else not mask[scalp].any()


def test_a_subject_folder_with_a_problem_is_refused_for_that_problem(tmp_path, checkpoint, capsys):
    folder = write_subject(tmp_path / "data", shape=SHAPE)
    flair = next(folder.glob("*_FLAIR.nii.gz"))
    (folder / "sub-01_flair.nii").write_bytes(gzip.decompress(flair.read_bytes()))
    assert _predict(folder, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"lesionseg predict: error: {folder}: FLAIR is present 2 times") and "neither" not in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _predict(empty, "--checkpoint", checkpoint, "--mask-out", tmp_path / "m.nii.gz") == 2
    assert "neither a subject folder nor a folder of subject folders" in capsys.readouterr().err
