"""`lesionseg train` through the real command line."""

import pytest
from conftest import write_subject

from napari_lesionseg.cli import main
from napari_lesionseg.constants import CORE_MODALITIES
from napari_lesionseg.engine.checkpoints import load_checkpoint
from napari_lesionseg.engine.requirements import trained_spacing
from napari_lesionseg.training.config import TrainingConfig
from napari_lesionseg.training.data import load_training_subjects
from napari_lesionseg.training.export import learning_spacing
from napari_lesionseg.vocabulary import LOSSES

TINY_ARGS = [
    "--model-param", "growth_rate=2", "--model-param", "initial_features=4", "--model-param", "dense_blocks_down=1",
    "--model-param", "layers_per_block=1", "--model-param", "multiscale_features=2",
    "--model-param", "bottleneck_factor=1", "--model-param", "input_stride2=false", "--patch-size", "8",
]  # fmt: skip



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    for seed in (1, 2):
        write_subject(root / "train", name=f"sub-0{seed}", shape=(16, 16, 16), seed=seed, suffix=".nii")
    write_subject(root / "val", name="sub-09", shape=(16, 16, 16), seed=9, suffix=".nii")
    return root


def test_train_command_writes_checkpoint_history_and_progress(data, tmp_path, capsys):
    out = tmp_path / "tiny.pt"
    code = main([
        "train", "--data", str(data / "train"), "--val", str(data / "val"), "--out", str(out),
        "--loss", "fbeta", "--beta", "1.5", "--epochs", "2", "--patches-per-subject", "2",
        "--val-tta", "none", "--seed", "1", *TINY_ARGS,
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metadata = load_checkpoint(out)[1]
    assert metadata.beta == 1.5 and metadata.model["growth_rate"] == 2 and metadata.patch_size == [8, 8, 8]
    assert metadata.model["input_stride2"] is False
    assert f"checkpoint {out} after 4 steps" in captured.out and "validation: dsc=" in captured.out
    assert "4/4" in captured.err and "epoch 2: validation: dsc=" in captured.err  # progress lines
    assert (tmp_path / "tiny_training" / "history.csv").is_file()


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_precision_reaches_the_training_run(data, tmp_path, precision):
    out = tmp_path / "m.pt"
    args = ["train", "--data", str(data / "train"), "--out", str(out), "--max-steps", "1", "--quiet"]
    assert main([*args, "--precision", precision, *TINY_ARGS]) == 0
    assert load_checkpoint(out)[1].training["precision"] == precision


def test_optional_inputs_and_their_dropout_reach_the_checkpoint(data, tmp_path):
    out = tmp_path / "m.pt"
    args = ["train", "--data", str(data / "train"), "--out", str(out), "--max-steps", "1", "--quiet", *TINY_ARGS]
    assert main([*args, "--optional", "T2w, PDw", "--modality-dropout", "0.5"]) == 0
    metadata = load_checkpoint(out)[1]
    assert metadata.optional_modalities == ["T2w", "PDw"] and metadata.training["modality_dropout"] == 0.5
    plain = tmp_path / "plain.pt"
    assert main(["train", "--data", str(data / "train"), "--out", str(plain), "--max-steps", "1", "--quiet", *TINY_ARGS]) == 0
    assert load_checkpoint(plain)[1].optional_modalities == [] and load_checkpoint(plain)[1].training["modality_dropout"] == 0.0


def test_brain_and_lesion_patches_reach_the_checkpoint_and_a_state_from_before_them_resumes(data, tmp_path, capsys):
    from napari_lesionseg.training.state import STATE_FILE, load_state, save_state

    out = tmp_path / "m.pt"
    args = ["train", "--data", str(data / "train"), "--out", str(out), "--max-steps", "1", "--quiet", *TINY_ARGS]
    assert main([*args, "--brain-patches", "0.25", "--lesion-patches", "0.25", "--patches-per-subject", "4"]) == 0
    training = load_checkpoint(out)[1].training
    assert training["brain_patch_fraction"] == 0.25 and training["lesion_patch_fraction"] == 0.25
    plain = tmp_path / "plain.pt"
    plain_args = ["train", "--data", str(data / "train"), "--out", str(plain), "--max-steps", "1", "--quiet", *TINY_ARGS]
    assert main(plain_args) == 0
    state_path = tmp_path / "plain_training" / STATE_FILE
    state = load_state(state_path)
    del state["identity"]["brain_patch_fraction"]  # as a state written before the options existed
    del state["identity"]["lesion_patch_fraction"]
    save_state(state_path, state)
    capsys.readouterr()
    assert main([*plain_args, "--max-steps", "2", "--resume"]) == 0
    assert "after 2 steps" in capsys.readouterr().out


def test_spacing_resamples_the_subjects_and_is_the_checkpoints_model_space(data, tmp_path, capsys):
    """1 mm folders trained at 2 mm: the loader resamples them as inference does, the checkpoint says 2 mm, and a
    resume at another spacing is refused."""
    subjects = load_training_subjects([data / "train"], CORE_MODALITIES, model_spacing=(2.0, 2.0, 2.0))
    assert [s.mask.shape for s in subjects] == [(8, 8, 8)] * 2 and {s.spacing for s in subjects} == {(2.0, 2.0, 2.0)}
    out = tmp_path / "m.pt"
    args = ["train", "--data", str(data / "train"), "--out", str(out), "--max-steps", "1", "--quiet", *TINY_ARGS]
    args += ["--min-lesion-voxels", "1"]  # 2 mm voxels: the small synthetic lesions keep few of them
    assert main([*args, "--spacing", "2"]) == 0
    metadata = load_checkpoint(out)[1]
    assert trained_spacing(metadata) == (2.0, 2.0, 2.0) and metadata.training["spacing"] == 2.0
    assert main([*args, "--spacing", "1.5", "--max-steps", "2", "--resume"]) == 2
    assert "spacing: 2.0 -> 1.5" in capsys.readouterr().err
    assert main(["train", "--data", str(data / "train"), "--out", str(tmp_path / "own.pt"), "--max-steps", "1",
                 "--quiet", *TINY_ARGS]) == 0  # fmt: skip
    assert trained_spacing(load_checkpoint(tmp_path / "own.pt")[1]) == (1.0, 1.0, 1.0)


def test_a_network_continued_on_finer_folders_learns_at_its_own_spacing(data, tmp_path, capsys):
    """`--init` without `--spacing`: the 1 mm folders are resampled to the start's 2 mm, which the checkpoint records.

    Seen through the patch selection: a patch needing more lesion voxels than any subject has at 2 mm is
    found at 1 mm only."""
    args = ["train", "--data", str(data / "train"), "--max-steps", "1", "--quiet", *TINY_ARGS]
    trunk, member = tmp_path / "trunk.pt", tmp_path / "member.pt"
    assert main([*args, "--out", str(trunk), "--spacing", "2", "--min-lesion-voxels", "1"]) == 0
    assert learning_spacing(TrainingConfig(data=[], out=member, init_checkpoint=str(trunk))) == (2.0, 2.0, 2.0)
    assert learning_spacing(TrainingConfig(data=[], out=member)) is None
    at_2mm = load_training_subjects([data / "train"], CORE_MODALITIES, model_spacing=(2.0, 2.0, 2.0))
    more = ["--min-lesion-voxels", str(max(int(s.mask.sum()) for s in at_2mm) + 1)]
    continued = [*args, "--out", str(member), "--init", str(trunk), "--warm-start", *more]
    assert main([*continued, "--spacing", "1", "--out", str(tmp_path / "at-1mm.pt")]) == 0  # at the folders' 1 mm it exists
    capsys.readouterr()
    assert main(continued) == 2  # at the start's 2 mm it does not
    assert "lesion voxels" in capsys.readouterr().err
    assert main([*args, "--out", str(member), "--init", str(trunk), "--warm-start", "--min-lesion-voxels", "1"]) == 0
    assert trained_spacing(load_checkpoint(member)[1]) == (2.0, 2.0, 2.0)


def test_quiet_resume_of_a_finished_run_reports_it_again(data, tmp_path, capsys):
    args = ["train", "--data", str(data / "train"), "--out", str(tmp_path / "m.pt"), "--max-steps", "1", "--quiet"]
    args += TINY_ARGS
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.count("after 1 steps") == 2


def test_warm_start_is_a_network_of_its_own_and_init_alone_a_fine_tune(data, tmp_path):
    """Both start from the trunk's weights; only the fine-tune lists the trunk as its parent."""
    args = ["train", "--data", str(data / "train"), "--max-steps", "2", "--quiet", *TINY_ARGS]
    trunk = tmp_path / "trunk.pt"
    assert main([*args, "--out", str(trunk)]) == 0
    member, tuned = tmp_path / "member.pt", tmp_path / "tuned.pt"
    assert main([*args, "--out", str(member), "--init", str(trunk), "--warm-start", "--loss", "focal"]) == 0
    assert main([*args, "--out", str(tuned), "--init", str(trunk)]) == 0
    member_model, member_meta = load_checkpoint(member)
    tuned_meta = load_checkpoint(tuned)[1]
    assert member_meta.parent is None and tuned_meta.parent == "trunk"
    assert member_meta.training["init_checkpoint"] == str(trunk) and member_meta.training["warm_start"] is True
    assert member_meta.loss == "focal" and member_meta.training["steps"] == 2
    trunk_state = load_checkpoint(trunk)[0].state_dict()
    changed = [k for k, v in member_model.state_dict().items() if v.is_floating_point() and not v.equal(trunk_state[k])]
    assert changed  # it trained
    start = tmp_path / "start.pt"
    assert main([*args, "--out", str(start), "--init", str(trunk), "--warm-start", "--max-steps", "0"]) == 0
    start_state = load_checkpoint(start)[0].state_dict()
    assert all(v.equal(trunk_state[k]) for k, v in start_state.items())  # from the trunk's weights, not fresh ones


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--patch-size", "8", "8"], "--patch-size takes 1 or 3 numbers"),
        (["--loss-param", "gamma"], "--loss-param expects KEY=VALUE"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--init", "no-such-checkpoint"], "no checkpoint named 'no-such-checkpoint'"),
        (["--warm-start"], "a warm start needs the checkpoint it starts from (--init)"),
        (["--optional", "FLAIR,T1w,T2w,PDw"], "must be some, not all, of the modalities"),
        (["--optional", "T2w", "--modality-dropout", "1"], "modality dropout must be in [0, 1)"),
        (["--brain-patches", "1"], "share of brain patches must be in [0, 1)"),
        (["--spacing", "0"], "the training spacing must be > 0 mm"),
    ],
)
def test_bad_options_exit_with_one_clear_line(data, tmp_path, capsys, extra, message):
    args = ["train", "--data", str(data / "train"), "--out", str(tmp_path / "m.pt"), *TINY_ARGS, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("lesionseg train: error:")


def test_missing_data_folder(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_offers_every_engine_loss(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--loss", "nonsense", "--data", "x", "--out", "y.pt"])
    err = capsys.readouterr().err
    assert all(f"'{loss}'" in err for loss in LOSSES)
