"""Checkpoints: round trip, refusals of unsafe or broken files, metadata checks, name lookup."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch

from napari_lesionseg import __version__
from napari_lesionseg.engine import checkpoints
from napari_lesionseg.engine.checkpoints import (
    CheckpointMetadata,
    list_checkpoints,
    load_checkpoint,
    read_metadata,
    resolve_checkpoint,
    save_checkpoint,
    user_checkpoint_dir,
)
from napari_lesionseg.engine.requirements import check_modalities
from napari_lesionseg.errors import CheckpointError
from napari_lesionseg.models import build_model, model_config

MODALITIES = ["FLAIR", "T1w"]


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path, monkeypatch):
    """User checkpoints under tmp_path/home, bundled ones under tmp_path/bundled: never the real ones."""
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(checkpoints, "BUNDLED_DIR", tmp_path / "bundled")
    return tmp_path


def _config(**overrides):
    return model_config("compact", in_channels=len(MODALITIES), dense_blocks_down=1, layers_per_block=1,
                        patch_size=[8, 8, 8], **overrides)


def _metadata(name="tiny", config=None, **fields):
    return CheckpointMetadata(
        name=name,
        model=config or _config(),
        loss="fbeta",
        beta=1.5,
        modalities=list(MODALITIES),
        patch_size=[8, 8, 8],
        normalization={"method": "zscore", "percentiles": [0.5, 99.5]},
        training={"subjects": ["sub-01"], "seed": 7, "epochs": 2},
        validation={"dsc": 0.61, "f2": 0.7},
        **fields,
    )


def _trained_model(config=None):
    torch.manual_seed(0)
    model = build_model(config or _config()).train()
    model(torch.randn(2, len(MODALITIES), 8, 8, 8))  # moves the batch-norm running statistics
    return model.eval()


def _save(path, name="tiny"):
    model = _trained_model()
    return save_checkpoint(path, model, _metadata(name)), model


class TestRoundTrip:
    def test_reloaded_network_gives_identical_outputs(self, tmp_path):
        model, saved = _trained_model(), _metadata()
        path = save_checkpoint(tmp_path / "tiny.pt", model, saved)
        loaded, metadata = load_checkpoint(path)
        x = torch.randn(1, len(MODALITIES), 8, 8, 8)
        with torch.no_grad():
            assert torch.equal(model(x), loaded(x))
        assert not loaded.training
        assert metadata == saved

    def test_metadata_round_trip(self, tmp_path):
        metadata = _metadata(parent="paper-beta1.5")
        save_checkpoint(tmp_path / "tiny.pt", _trained_model(), metadata)
        assert read_metadata(tmp_path / "tiny.pt") == metadata
        assert metadata.version == __version__ and "T" in metadata.created

    def test_unet_round_trip(self, tmp_path):
        config = model_config("unet", in_channels=2, base_features=2, depth=1, patch_size=[8, 8, 8])
        model = build_model(config).eval()
        save_checkpoint(tmp_path / "unet.pt", model, _metadata(config=config))
        loaded, metadata = load_checkpoint(tmp_path / "unet.pt")
        x = torch.randn(1, 2, 8, 8, 8)
        with torch.no_grad():
            assert torch.equal(model(x), loaded(x))
        assert metadata.model == config

    def test_save_is_atomic_and_replaces(self, tmp_path):
        folder = tmp_path / "out"
        _save(folder / "tiny.pt")
        save_checkpoint(folder / "tiny.pt", _trained_model(), _metadata(name="second"))
        assert [p.name for p in folder.iterdir()] == ["tiny.pt"]  # no temporary file left behind
        assert read_metadata(folder / "tiny.pt").name == "second"

    def test_metadata_is_read_once_per_file_version(self, tmp_path, monkeypatch):
        reads = []
        read_payload = checkpoints._read_payload
        monkeypatch.setattr(checkpoints, "_read_payload", lambda path: reads.append(path) or read_payload(path))
        path, _ = _save(tmp_path / "tiny.pt", name="first")
        first = read_metadata(path)
        first.name = "edited by a caller"
        assert read_metadata(path).name == "first" and len(reads) == 1  # cached, and callers get copies
        save_checkpoint(path, _trained_model(), _metadata(name="second"))
        assert read_metadata(path).name == "second" and len(reads) == 2

    def test_file_holds_only_tensors_and_json(self, tmp_path):
        path, _ = _save(tmp_path / "tiny.pt")
        payload = torch.load(path, weights_only=True)
        assert set(payload) == {"format", "format_version", "metadata", "state_dict"}
        assert json.loads(payload["metadata"])["modalities"] == MODALITIES


class _CreatesMarker:
    """Unpickling this object opens (creates) the marker file: the payload of a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class TestRefusals:
    def test_malicious_pickle_is_not_executed(self, tmp_path):
        proof = tmp_path / "proof"
        pickle.loads(pickle.dumps(_CreatesMarker(proof)))
        assert proof.exists()  # the payload really runs when unpickled without restrictions

        marker = tmp_path / "marker"
        plain = tmp_path / "plain.pt"
        plain.write_bytes(pickle.dumps({"state_dict": _CreatesMarker(marker)}))
        zipped = tmp_path / "zipped.pt"
        torch.save({"format": checkpoints.FORMAT, "metadata": "{}", "state_dict": _CreatesMarker(marker)}, zipped)
        for path in (plain, zipped):
            with pytest.raises(CheckpointError, match="nothing in it was executed"):
                load_checkpoint(path)
            with pytest.raises(CheckpointError):
                read_metadata(path)
        with pytest.raises(CheckpointError, match="Unsupported global"):  # refused by the weights-only unpickler
            load_checkpoint(zipped)
        assert not marker.exists()

    def test_truncated_file(self, tmp_path):
        path, _ = _save(tmp_path / "tiny.pt")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="tiny.pt"):
            load_checkpoint(path)

    @pytest.mark.parametrize("payload", [b"", b"\x00" * 10, bytes(range(256)) * 8])
    def test_random_bytes(self, tmp_path, payload):
        path = tmp_path / "junk.pt"
        path.write_bytes(payload)
        with pytest.raises(CheckpointError, match="junk.pt"):
            load_checkpoint(path)

    def test_plain_torch_file_is_not_a_checkpoint(self, tmp_path):
        torch.save(_trained_model().state_dict(), tmp_path / "bare.pt")
        with pytest.raises(CheckpointError, match="not a napari-lesionseg checkpoint"):
            load_checkpoint(tmp_path / "bare.pt")

    def test_newer_format_asks_for_an_upgrade(self, tmp_path):
        torch.save({"format": checkpoints.FORMAT, "format_version": 99, "metadata": "{}", "state_dict": {}},
                   tmp_path / "new.pt")
        with pytest.raises(CheckpointError, match="upgrade"):
            load_checkpoint(tmp_path / "new.pt")

    def test_weights_of_another_architecture(self, tmp_path):
        unet = build_model(model_config("unet", in_channels=2, base_features=2, depth=1))
        payload = {"format": checkpoints.FORMAT, "format_version": 1, "metadata": _metadata().to_json(),
                   "state_dict": unet.state_dict()}
        torch.save(payload, tmp_path / "mixed.pt")
        with pytest.raises(CheckpointError, match="do not fit the fcdensenet network"):
            load_checkpoint(tmp_path / "mixed.pt")

    def test_weights_of_another_width(self, tmp_path):
        model = _trained_model(_config(growth_rate=8))
        with pytest.raises(CheckpointError, match="wrong shapes"):
            save_checkpoint(tmp_path / "bad.pt", model, _metadata())  # metadata says growth rate 12
        assert not (tmp_path / "bad.pt").exists()

    def test_metadata_contradictions(self, tmp_path):
        model = _trained_model()
        with pytest.raises(CheckpointError, match="3 modalities"):
            three = dataclasses.replace(_metadata(), modalities=["FLAIR", "T1w", "T2w"])
            save_checkpoint(tmp_path / "x.pt", model, three)
        with pytest.raises(CheckpointError, match="patch size"):
            save_checkpoint(tmp_path / "x.pt", model, dataclasses.replace(_metadata(), patch_size=[6, 8, 8]))
        with pytest.raises(CheckpointError, match="JSON"):
            save_checkpoint(tmp_path / "x.pt", model, dataclasses.replace(_metadata(), training={"seed": object()}))
        with pytest.raises(CheckpointError, match="distinct"):
            save_checkpoint(tmp_path / "x.pt", model, dataclasses.replace(_metadata(), modalities=["FLAIR", "FLAIR"]))

    def test_metadata_with_missing_fields(self, tmp_path):
        data = json.loads(_metadata().to_json())
        del data["modalities"]
        payload = {"format": checkpoints.FORMAT, "format_version": 1, "metadata": json.dumps(data),
                   "state_dict": _trained_model().state_dict()}
        torch.save(payload, tmp_path / "old.pt")
        with pytest.raises(CheckpointError, match="missing fields \\['modalities'\\]"):
            read_metadata(tmp_path / "old.pt")


class TestModalities:
    def test_returns_the_checkpoint_channel_order(self):
        assert check_modalities(_metadata(), ["T2w", "t1w", "flair"]) == ["flair", "t1w"]

    def test_missing_modality_names_it_and_the_checkpoint(self):
        with pytest.raises(CheckpointError, match=r"'tiny'.*missing: T1w"):
            check_modalities(_metadata(), ["FLAIR", "T2w"])


class TestLocations:
    def test_user_dir_follows_lesionseg_home(self, tmp_path):
        assert user_checkpoint_dir() == tmp_path / "home" / "checkpoints"

    def test_user_dir_falls_back_to_xdg(self, tmp_path, monkeypatch):
        monkeypatch.delenv("LESIONSEG_HOME")
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert user_checkpoint_dir() == tmp_path / "xdg" / "napari-lesionseg" / "checkpoints"
        monkeypatch.delenv("XDG_DATA_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "fakehome"))
        assert user_checkpoint_dir() == tmp_path / "fakehome" / ".local" / "share" / "napari-lesionseg" / "checkpoints"

    def test_names_resolve_user_first_then_bundled(self, tmp_path):
        _save(checkpoints.BUNDLED_DIR / "shared.pt", name="bundled copy")
        _save(checkpoints.BUNDLED_DIR / "only-bundled.pt")
        assert resolve_checkpoint("shared") == checkpoints.BUNDLED_DIR / "shared.pt"
        _save(user_checkpoint_dir() / "shared.pt", name="user copy")
        assert resolve_checkpoint("shared") == user_checkpoint_dir() / "shared.pt"
        assert read_metadata("shared").name == "user copy"
        assert load_checkpoint("only-bundled")[1].name == "tiny"

    def test_unknown_name_lists_the_available_ones(self):
        _save(user_checkpoint_dir() / "mine.pt")
        with pytest.raises(CheckpointError, match="'nope'.*available: mine"):
            resolve_checkpoint("nope")
        with pytest.raises(CheckpointError, match="does not exist"):
            resolve_checkpoint("missing/file.pt")

    def test_list_checkpoints_skips_unreadable_files_with_a_warning(self):
        _save(user_checkpoint_dir() / "mine.pt")
        _save(checkpoints.BUNDLED_DIR / "theirs.pt")
        (checkpoints.BUNDLED_DIR / "broken.pt").write_bytes(b"not a checkpoint")
        with pytest.warns(UserWarning, match="broken.pt"):
            found = list_checkpoints()
        assert [(info.name, info.source) for info in found] == [("mine", "user"), ("theirs", "bundled")]
        assert found[0].metadata.beta == 1.5

    def test_no_folders_no_checkpoints(self):
        assert list_checkpoints() == []
