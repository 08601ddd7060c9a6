"""The one prediction entry point: modalities matched by name, normalisation checked, any caller's images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET

from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import CheckpointError, InvalidInputError


class TestPredict:
    def _checkpoint(self, tmp_path, modalities=("FLAIR", "T1w"), normalization=None):
        from napari_lesionseg.data.intensity import NORMALIZATION
        from napari_lesionseg.engine.checkpoints import CheckpointMetadata, load_checkpoint, save_checkpoint
        from napari_lesionseg.models import build_model, model_config

        config = model_config("compact", in_channels=len(modalities), **TINY_FCDENSENET)
        torch.manual_seed(0)  # random weights: these tests check geometry and plumbing, not accuracy
        metadata = CheckpointMetadata(
            name="tiny",
            model=config,
            loss="fbeta",
            beta=1.5,
            modalities=list(modalities),
            patch_size=[8, 8, 8],
            normalization=dict(NORMALIZATION) if normalization is None else normalization,
        )
        path = save_checkpoint(tmp_path / "tiny.pt", build_model(config), metadata)
        return load_checkpoint(path)

    def test_modalities_are_matched_by_name_and_the_patch_size_comes_from_the_checkpoint(self, tmp_path, make_subject):
        from napari_lesionseg.data.subject import load_subject

        subject = load_subject(make_subject(shape=(12, 10, 9)))
        model, metadata = self._checkpoint(tmp_path, ("T2w", "FLAIR"))
        result = predict(subject, (model, metadata), InferenceSettings(tta="none", device="cpu"))
        assert result.probability.shape == subject.geometry.shape
        assert result.grid.patch_size == (8, 8, 8) and "normalisation" in result.timings

    def test_missing_modality_names_it(self, tmp_path, make_subject):
        from napari_lesionseg.data.subject import load_subject

        subject = load_subject(make_subject(shape=(12, 10, 9), modalities=("FLAIR", "T1w")))
        with pytest.raises(CheckpointError, match="missing: T2w"):
            predict(subject, self._checkpoint(tmp_path, ("FLAIR", "T2w")), InferenceSettings(device="cpu"))

    def test_checkpoint_trained_with_another_normalisation_is_refused(self, tmp_path, make_subject):
        from napari_lesionseg.data.subject import load_subject

        subject = load_subject(make_subject(shape=(12, 10, 9)))
        checkpoint = self._checkpoint(tmp_path, normalization={"method": "minmax"})
        with pytest.raises(CheckpointError, match="'minmax'"):
            predict(subject, checkpoint, InferenceSettings(device="cpu"))

    def test_images_by_modality_give_the_same_result_as_the_subject(self, tmp_path, make_subject):
        from napari_lesionseg.data.subject import load_subject

        subject = load_subject(make_subject(shape=(12, 10, 9)))
        checkpoint = self._checkpoint(tmp_path, ("T2w", "FLAIR"))
        settings = InferenceSettings(tta="none", device="cpu")
        from_subject = predict(subject, checkpoint, settings)
        images = {m: v.data for m, v in subject.images.items()}
        from_arrays = predict(images, checkpoint, settings)
        np.testing.assert_array_equal(from_subject.probability, from_arrays.probability)

    def test_a_blank_image_is_refused(self, tmp_path):
        checkpoint = self._checkpoint(tmp_path, ("T2w", "FLAIR"))
        images = {"FLAIR": np.random.default_rng(0).random((12, 10, 9), np.float32), "T2w": np.zeros((12, 10, 9), np.float32)}
        with pytest.raises(InvalidInputError, match="^every voxel of the T2w is 0; an empty image holds nothing to segment$"):
            predict(images, checkpoint, InferenceSettings(device="cpu"))

    def test_images_of_different_shapes_are_refused(self, tmp_path):
        checkpoint = self._checkpoint(tmp_path, ("T2w", "FLAIR"))
        rng = np.random.default_rng(0)
        images = {"FLAIR": rng.random((12, 10, 9), np.float32), "T2w": rng.random((12, 10, 8), np.float32)}
        with pytest.raises(InvalidInputError, match="one voxel grid"):
            predict(images, checkpoint, InferenceSettings(device="cpu"))

    @pytest.mark.parametrize("spacing_mm, noted", [(1.0, True), (10.0, False)])
    def test_a_field_far_smaller_than_a_head_gets_a_note(self, tmp_path, make_subject, spacing_mm, noted):
        from conftest import make_affine

        from napari_lesionseg.data.subject import load_subject

        # the same 12x10x9 voxels: at 1 mm a crop of well under 1 mL of head, at 10 mm a head region of about 270 mL
        subject = load_subject(make_subject(shape=(12, 10, 9), affine=make_affine((spacing_mm,) * 3)))
        result = predict(subject, self._checkpoint(tmp_path), InferenceSettings(tta="none", device="cpu"))
        notes = [m for m in result.messages if "mL of head" in m]
        assert bool(notes) is noted
        if noted:
            assert notes[0].startswith("the images hold only ") and "give the whole scan" in notes[0]
