"""The shipped checkpoints themselves: safe to load, finite, and serving the protocols users have."""

from __future__ import annotations

import pytest
import torch

from napari_lesionseg.engine.catalog import pick_by_beta
from napari_lesionseg.engine.checkpoints import BUNDLED_DIR, list_checkpoints, load_checkpoint
from napari_lesionseg.engine.requirements import required_modalities, used_modalities

BUNDLED = sorted(BUNDLED_DIR.glob("*.pt"))


PAPERS_LOSSES = {("fbeta", 1.0), ("fbeta", 1.5), ("fbeta", 3.0), ("focal", None)}


def test_the_family_has_the_papers_losses_trained_on_phantoms_and_on_the_generator():
    metadata = [load_checkpoint(p)[1] for p in BUNDLED]
    assert PAPERS_LOSSES <= {(m.loss, m.beta) for m in metadata if m.spacing == [2.0] * 3}
    generator = [m for m in metadata if m.spacing == [1.5] * 3 and m.optional_modalities]
    assert PAPERS_LOSSES <= {(m.loss, m.beta) for m in generator}
    assert all(m.parent is None for m in metadata)  # family members, not fine-tunes: `--beta` may pick them


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_each_checkpoint_is_finite_needs_the_flair_and_records_its_spacing(path):
    model, metadata = load_checkpoint(path)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    assert required_modalities(metadata)[0] == "FLAIR"
    assert metadata.spacing is not None and max(metadata.spacing) <= 2.0
    assert 0.0 < metadata.validation["mean"]["dsc"] <= 1.0


@pytest.mark.parametrize(
    "inputs, name, uses",
    [
        (("FLAIR",), "fbeta_1.5_flair", ["FLAIR"]),
        (("FLAIR", "T1w"), "fbeta_1.5_flair-t1w", ["FLAIR", "T1w"]),
        # no PDw: the generator-trained network, whose T1w, T2w, PDw and T1c are optional
        (("FLAIR", "T1w", "T2w"), "fbeta_1.5_generator", ["FLAIR", "T1w", "T2w"]),
        (("FLAIR", "T1w", "T1c", "T2w"), "fbeta_1.5_generator", ["FLAIR", "T1w", "T2w", "T1c"]),
        # as many inputs used by both: the generator-trained network before the phantom-trained one (choice.BUNDLED_PREFERENCE)
        (("FLAIR", "T1w", "T2w", "PDw"), "fbeta_1.5_generator", ["FLAIR", "T1w", "T2w", "PDw"]),
    ],
)
def test_beta_1_5_runs_every_common_protocol_with_the_most_of_its_inputs(inputs, name, uses, monkeypatch, tmp_path):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path))  # no user checkpoints
    picked = pick_by_beta(list_checkpoints(), 1.5, inputs)
    assert picked.path.parent == BUNDLED_DIR and picked.metadata.beta == 1.5
    assert picked.name == name and used_modalities(picked.metadata, inputs) == uses
