"""Optional inputs: one network trained with modality dropout runs with and without them (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_FINETUNE, synthetic_anatomy, write_subject

from napari_lesionseg.data.intensity import normalize_stack
from napari_lesionseg.engine.checkpoints import load_checkpoint
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training import TrainingConfig, train
from napari_lesionseg.training.corrections import FineTuneRequest, fine_tune_on_correction
from napari_lesionseg.training.data import TrainingSubject, channels_subject
from napari_lesionseg.training.sampling import PatchSampler

MODALITIES = ("FLAIR", "T1w", "T2w", "PDw")


def _subject(channels: int = 4, shape=(10, 10, 10)) -> TrainingSubject:
    mask = np.zeros(shape, bool)
    mask[2:8, 2:8, 2:8] = True
    image = np.random.default_rng(0).normal(1.0, 0.1, size=(channels, *shape)).astype(np.float32)
    return TrainingSubject("s", image, mask, (1.0, 1.0, 1.0))


class TestSamplerDropout:
    def test_only_optional_channels_are_zeroed_at_about_the_chance(self):
        subject = _subject()
        sampler = PatchSampler([subject], (6, 6, 6), 400, seed=2, optional_channels=(2, 3), channel_dropout=0.3)
        specs = sampler.epoch(0)
        assert {c for spec in specs for c in spec.dropped} == {2, 3}
        share = np.mean([len(spec.dropped) for spec in specs]) / 2
        assert 0.24 < share < 0.36
        for spec in specs[:40]:
            image, _ = sampler.extract(spec)
            kept = [c for c in range(4) if c not in spec.dropped]
            assert not image[list(spec.dropped)].any()
            assert (image[kept] != 0).all()

    def test_whole_volume_patch_never_changes_the_subject(self):
        subject = _subject(shape=(6, 6, 6))
        before = subject.image.copy()
        sampler = PatchSampler([subject], (6, 6, 6), 20, augment="none", optional_channels=(1,), channel_dropout=0.9)
        for spec in sampler.epoch(0):
            sampler.extract(spec)
        np.testing.assert_array_equal(subject.image, before)

    def test_without_dropout_the_patches_are_those_of_before(self):
        subject = _subject()
        plain = PatchSampler([subject], (6, 6, 6), 30, seed=5).epoch(1)
        assert plain == PatchSampler([subject], (6, 6, 6), 30, seed=5, optional_channels=(1,)).epoch(1)
        dropped = PatchSampler([subject], (6, 6, 6), 30, seed=5, optional_channels=(1,), channel_dropout=0.5).epoch(1)
        assert [(s.start, s.variant) for s in dropped] == [(s.start, s.variant) for s in plain]

    def test_refuses_a_chance_of_one(self):
        with pytest.raises(InvalidInputError, match="modality dropout"):
            PatchSampler([_subject()], (6, 6, 6), 2, optional_channels=(1,), channel_dropout=1.0)


class TestChannelsSubject:
    def test_absent_optional_input_is_zero_and_the_others_are_normalised_alone(self):
        images, mask = synthetic_anatomy((12, 12, 12), seed=1)
        present = {m: images[m] for m in ("FLAIR", "T1w")}
        subject = channels_subject(present, mask, (1, 1, 1), "sub-x", modalities=MODALITIES, optional=("T2w", "PDw"))
        assert subject.image.shape == (4, 12, 12, 12)
        assert not subject.image[2:].any()
        expected = normalize_stack(np.stack([images["FLAIR"], images["T1w"]]).astype(np.float32))
        np.testing.assert_allclose(subject.image[:2], expected, atol=1e-6)

    def test_absent_required_input_names_the_subject(self):
        images, mask = synthetic_anatomy((12, 12, 12), seed=1)
        with pytest.raises(InvalidInputError, match="'sub-x' lacks T1w"):
            channels_subject({"FLAIR": images["FLAIR"]}, mask, (1, 1, 1), "sub-x", modalities=MODALITIES, optional=("PDw",))


def test_config_refuses_optional_inputs_that_are_not_some_of_the_inputs(tmp_path):
    with pytest.raises(InvalidInputError, match="some, not all"):
        TrainingConfig(data=[tmp_path], out=tmp_path / "m.pt", modalities=("FLAIR",), optional_modalities=("FLAIR",))
    with pytest.raises(InvalidInputError, match="some, not all"):
        TrainingConfig(data=[tmp_path], out=tmp_path / "m.pt", modalities=("FLAIR",), optional_modalities=("T1w",))


@pytest.fixture(scope="module")
def dropout_checkpoint(tmp_path_factory):
    """A tiny network trained on one four-input and one FLAIR + T1w subject, T2w and PDw optional."""
    root = tmp_path_factory.mktemp("dropout")
    write_subject(root / "train", name="sub-full", shape=(16, 16, 16), seed=1)
    write_subject(root / "train", name="sub-two", shape=(16, 16, 16), seed=2, modalities=("FLAIR", "T1w"))
    config = TrainingConfig(
        data=[root / "train"], out=root / "dropout.pt", modalities=MODALITIES, optional_modalities=("T2w", "PDw"),
        modality_dropout=0.5, preset="compact", model=TINY_FINETUNE, patch_size=(8, 8, 8), patches_per_subject=2,
        batch_size=2, epochs=2, seed=0,
    )  # fmt: skip
    return train(config).checkpoint


def test_a_dropout_network_records_its_optional_inputs_and_runs_without_them(dropout_checkpoint):
    model, metadata = load_checkpoint(dropout_checkpoint)
    assert metadata.optional_modalities == ["T2w", "PDw"]
    assert metadata.training["modality_dropout"] == 0.5
    assert all(torch.isfinite(p).all() for p in model.parameters())
    images, _ = synthetic_anatomy((16, 16, 16), seed=4)
    settings = InferenceSettings(tta="none", device="cpu")
    two = predict({m: images[m] for m in ("FLAIR", "T1w")}, dropout_checkpoint, settings)
    four = predict({m: images[m] for m in MODALITIES}, dropout_checkpoint, settings)
    assert two.probability.shape == four.probability.shape == (16, 16, 16)
    assert not np.array_equal(two.probability, four.probability)  # the optional channels reach the network


def test_fine_tune_without_an_optional_input_keeps_the_optional_inputs(dropout_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    images, mask = synthetic_anatomy((16, 16, 16), seed=3)
    request = FineTuneRequest(
        checkpoint=dropout_checkpoint, images={m: images[m] for m in ("FLAIR", "T1w", "T2w")}, mask=mask,
        spacing=(1.0, 1.0, 1.0), subject_name="sub-07", steps=2, lr=1e-3, device="cpu", batch_size=2,
        eval_every=1, out_dir=tmp_path / "out",
    )  # fmt: skip
    outcome = fine_tune_on_correction(request)
    assert outcome.steps == 2 and outcome.after is not None
    assert load_checkpoint(outcome.checkpoint)[1].optional_modalities == ["T2w", "PDw"]
