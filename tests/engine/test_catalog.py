"""How checkpoints are presented: a selector line led by beta, a details paragraph, run names."""

from pathlib import Path

from napari_lesionseg.engine.catalog import auto_run_name, checkpoint_details, checkpoint_labels, short_label
from napari_lesionseg.engine.checkpoints import CheckpointInfo, CheckpointMetadata


def _info(name, beta, source="bundled", parent=None, **metadata):
    meta = CheckpointMetadata(
        name=name, model={}, loss="fbeta", beta=beta, modalities=["FLAIR", "T1w"], patch_size=[32, 32, 32],
        parent=parent, **metadata,
    )  # fmt: skip
    return CheckpointInfo(name=name, path=Path(f"/ckpt/{name}.pt"), source=source, metadata=meta)


def test_each_line_starts_with_beta_and_says_where_the_file_comes_from():
    labels = checkpoint_labels([_info("fbeta_1.5", 1.5), _info("mine", 1.5, source="user")])
    assert labels["/ckpt/fbeta_1.5.pt"].startswith("β = 1.5") and "(bundled)" in labels["/ckpt/fbeta_1.5.pt"]
    assert "(yours)" in labels["/ckpt/mine.pt"]


def test_run_names_use_beta_unless_two_checkpoints_share_it():
    one, two = _info("a", 1.5), _info("b", 1.5)
    assert auto_run_name(one, [one]) == "beta 1.5"
    assert auto_run_name(one, [one, two]) == "a, beta 1.5"


def test_details_name_data_validation_parent_and_inputs():
    info = _info(
        "ft", 1.5, source="user", parent="fbeta_1.5",
        training={"data": ["x/sub-01", "x/sub-02"], "steps": 40}, validation={"mean": {"dsc": 0.7}},
    )  # fmt: skip
    text = checkpoint_details(info)
    assert "2 folder(s) (sub-01, sub-02), 40 steps" in text and "DSC 0.700 on the mask it was tuned on (not held out)" in text
    assert "fine-tuned from fbeta_1.5" in text and "inputs FLAIR, T1w" in text
    assert short_label(info) == "ft (user, from fbeta_1.5)"
