"""The checkpoint offered: bundled beta 1.5 for the loaded inputs; fine-tuned ones under their parent."""

from pathlib import Path

from napari_lesionseg.engine.catalog import pick_by_beta
from napari_lesionseg.engine.checkpoints import CheckpointInfo, CheckpointMetadata
from napari_lesionseg.engine.choice import (
    BUNDLED_PREFERENCE,
    bundled_rank,
    can_run,
    default_checkpoint,
    grouped,
    tuned_on,
)

FOUR = ["FLAIR", "T1w", "T2w", "PDw"]


def _info(
    name, beta, *, source="bundled", parent=None, modalities=FOUR, subject=None, created="2026-11-01T00:00:00+00:00",
    spacing=None, optional=(),
):  # fmt: skip
    training = {"fine_tune": {"viewer_subjects": [{"name": subject}]}} if subject else {}
    meta = CheckpointMetadata(
        name=name, model={}, loss="fbeta", beta=beta, modalities=list(modalities), patch_size=[32] * 3,
        parent=parent, training=training, created=created, spacing=spacing, optional_modalities=list(optional),
    )  # fmt: skip
    return CheckpointInfo(name=name, path=Path(f"/c/{name}.pt"), source=source, metadata=meta)


BUNDLED = [_info("fbeta_1.0", 1.0), _info("fbeta_1.5", 1.5), _info("fbeta_3.0", 3.0), _info("focal", None)]
TUNED = _info("fbeta_1.5_ft-sub-01", 1.5, source="user", parent="fbeta_1.5", subject="sub-01")


def test_the_bundled_beta_1_5_is_the_default_even_after_a_fine_tune():
    infos = [TUNED, *BUNDLED]  # the listing puts user checkpoints first
    assert default_checkpoint(infos, modalities=FOUR).name == "fbeta_1.5"
    assert default_checkpoint(infos, modalities=FOUR, subject="sub-02").name == "fbeta_1.5"


def test_a_fine_tuned_checkpoint_is_offered_first_for_its_own_subject():
    assert default_checkpoint([TUNED, *BUNDLED], modalities=FOUR, subject="sub-01") is TUNED
    assert tuned_on(TUNED) == "sub-01" and tuned_on(BUNDLED[0]) is None


def test_only_checkpoints_that_can_run_on_the_loaded_inputs_are_preselected():
    flair_t1 = _info("flair-t1_1.5", 1.5, modalities=["FLAIR", "T1w"])
    infos = [*BUNDLED, flair_t1]
    assert default_checkpoint(infos, modalities=["FLAIR", "T1w"]) is flair_t1
    assert default_checkpoint(infos, modalities=FOUR).name == "fbeta_1.5"  # the one using most inputs
    assert can_run(flair_t1, ["flair", "t1w", "t2w"]) and not can_run(BUNDLED[0], ["FLAIR", "T1w"])


def test_fine_tuned_checkpoints_are_listed_under_their_parent():
    older = _info("fbeta_1.5_ft-old", 1.5, source="user", parent="fbeta_1.5", created="2026-10-01T00:00:00+00:00")
    order = [info.name for info in grouped([TUNED, older, *reversed(BUNDLED)])]
    assert order == ["fbeta_1.0", "fbeta_1.5", "fbeta_1.5_ft-sub-01", "fbeta_1.5_ft-old", "fbeta_3.0", "focal"]



# Names of the shipped family: phantom-trained networks per input set, generator-trained ones.
PHANTOM_FOUR = _info("fbeta_1.5", 1.5, spacing=[2.0] * 3)
PHANTOM_FLAIR = _info("fbeta_1.5_flair", 1.5, modalities=["FLAIR"], spacing=[2.0] * 3)
GENERATOR_ANY = _info(
    "fbeta_1.5_generator", 1.5, modalities=["FLAIR", "T1w", "T2w", "PDw", "T1c"],
    optional=["T1w", "T2w", "PDw", "T1c"], spacing=[1.5] * 3,
)  # fmt: skip
GENERATOR_FLAIR = _info("fbeta_1.5_generator-flair", 1.5, modalities=["FLAIR"], spacing=[1.5] * 3)
FAMILY = [PHANTOM_FOUR, PHANTOM_FLAIR, GENERATOR_ANY, GENERATOR_FLAIR]  # alphabetical, as listed


def test_among_bundled_equals_the_validated_preference_decides_not_the_listing():
    # four phantom inputs: both use all four; the generator-trained network is preferred though listed later
    assert pick_by_beta(FAMILY, 1.5, FOUR) is GENERATOR_ANY
    assert default_checkpoint(FAMILY, modalities=FOUR) is GENERATOR_ANY
    # the FLAIR alone: three can run on it; the phantom-trained FLAIR network comes first in the preference
    assert pick_by_beta(FAMILY, 1.5, ["FLAIR"]) is PHANTOM_FLAIR
    assert default_checkpoint(FAMILY, modalities=["FLAIR"]) is PHANTOM_FLAIR
    assert bundled_rank(GENERATOR_FLAIR) == len(BUNDLED_PREFERENCE)  # not in the preference: after those


def test_using_more_of_the_inputs_outranks_the_preference():
    three = ["FLAIR", "T1w", "T2w"]
    assert pick_by_beta([PHANTOM_FLAIR, GENERATOR_ANY], 1.5, three) is GENERATOR_ANY
    assert pick_by_beta([PHANTOM_FLAIR, GENERATOR_FLAIR], 1.5, ["FLAIR"]) is PHANTOM_FLAIR


def test_a_users_checkpoint_beats_the_bundled_ones_using_as_many_inputs():
    mine = _info("fbeta_1.5_flair", 1.5, source="user", modalities=["FLAIR"])  # same name: ranked as the user's
    assert bundled_rank(mine) == len(BUNDLED_PREFERENCE)
    assert pick_by_beta([mine, *FAMILY], 1.5, ["FLAIR"]) is mine
    assert pick_by_beta([*FAMILY, mine], 1.5, ["FLAIR"]) is mine
