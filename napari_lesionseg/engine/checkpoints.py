"""Safe checkpoints: network weights plus the metadata needed to use them correctly.

A checkpoint file (``*.pt``) is written by ``torch.save`` and holds only plain data::

    {"format": "napari-lesionseg-checkpoint", "format_version": 1,
     "metadata": "<JSON text of CheckpointMetadata>", "state_dict": {name: tensor, ...}}

It is read with ``torch.load(..., weights_only=True)``, whose unpickler accepts tensors and
containers only, so loading never executes code from the file; anything else (a pickle with a
``__reduce__`` payload, random bytes, a truncated file) raises `CheckpointError`. Writes are
atomic (`napari_lesionseg._files.atomic_path`).

Where checkpoints live:

* bundled with the package: ``napari_lesionseg/engine/weights/*.pt``;
* the user's (fine-tunes): ``$LESIONSEG_HOME/checkpoints`` if set, else
  ``$XDG_DATA_HOME/napari-lesionseg/checkpoints`` (``~/.local/share/...`` by default).

A name (the file stem) is looked up in the user folder first, then in the bundled one. Weights
holding NaN or infinite values are refused like a corrupt file, and the listing reports such files
as unusable (`scan_checkpoints`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_lesionseg import __version__
from napari_lesionseg._files import atomic_path
from napari_lesionseg.engine._weights import (
    check_finite,
    check_state_fits,
    non_finite_problem,
    patch_problems,
)
from napari_lesionseg.errors import CheckpointError, LesionSegError
from napari_lesionseg.models import build_model

__all__ = [
    "BUNDLED_DIR",
    "CheckpointInfo",
    "CheckpointMetadata",
    "list_checkpoints",
    "load_checkpoint",
    "read_metadata",
    "resolve_checkpoint",
    "save_checkpoint",
    "scan_checkpoints",
    "user_checkpoint_dir",
]

#: Folder of the checkpoints shipped with the package.
BUNDLED_DIR = Path(__file__).parent / "weights"
FORMAT = "napari-lesionseg-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".pt"

#: path -> ((inode, mtime_ns, size), metadata) of the files `read_metadata` has read.
_METADATA_CACHE: dict[Path, tuple[tuple[int, int, int], CheckpointMetadata]] = {}
#: path -> ((inode, mtime_ns, size), problem or None) of the files `scan_checkpoints` has checked.
_WEIGHTS_CACHE: dict[Path, tuple[tuple[int, int, int], str | None]] = {}


@dataclasses.dataclass
class CheckpointMetadata:
    """What a checkpoint's weights need to be used correctly.

    Attributes:
        name: short name shown in selectors (usually the file stem).
        model: network config (`models.model_config`), enough to rebuild the network.
        loss: training loss name (`losses.LOSS_NAMES`).
        beta: F-beta's beta, or None for losses without one.
        modalities: input modalities in channel order, e.g. ``["FLAIR", "T1w", "T2w", "PDw"]``.
        patch_size: training patch size ``[D, H, W]``.
        spacing: voxel size ``[S, P, L]`` in mm the network was trained at (its model space); None in
            files written before it was recorded (see `trained_spacing`).
        optional_modalities: the modalities the network can run without (trained with modality
            dropout: a missing one is fed as background, 0); the others are required.
        normalization: intensity normalisation settings (`intensity`).
        training: training data description, seed, epochs...
        validation: validation metrics (keys of `metrics.compute_metrics`, e.g. ``"dsc"``).
        parent: name of the checkpoint this one was fine-tuned from, or None.
        version: napari-lesionseg version that wrote it.
        created: creation time, ISO 8601 with time zone.
    """

    name: str
    model: dict[str, Any]
    loss: str
    beta: float | None
    modalities: list[str]
    patch_size: list[int]
    normalization: dict[str, Any] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    validation: dict[str, Any] = dataclasses.field(default_factory=dict)
    parent: str | None = None
    spacing: list[float] | None = None
    optional_modalities: list[str] = dataclasses.field(default_factory=list)
    version: str = __version__
    created: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )

    def to_json(self) -> str:
        """Return the metadata as JSON text."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "checkpoint") -> CheckpointMetadata:
        """Build metadata from a dict, refusing missing or unknown fields with a `CheckpointError`."""
        fields = dataclasses.fields(cls)
        required = {f.name for f in fields if dataclasses.MISSING is f.default is f.default_factory}
        missing, unknown = sorted(required - set(data)), sorted(set(data) - {f.name for f in fields})
        if missing or unknown:
            raise CheckpointError(f"{source}: metadata has missing fields {missing} and unknown fields {unknown}")
        metadata = cls(**dict(data))
        metadata.validate(source)
        return metadata

    def validate(self, source: str = "checkpoint") -> None:
        """Raise `CheckpointError` if the fields contradict each other or the network config."""
        problems = []
        if not isinstance(self.loss, str):
            problems.append(f"loss is {self.loss!r}, expected a loss name")
        if not isinstance(self.model, dict):
            problems.append(f"model config is {type(self.model).__name__}, expected a dict")
        elif len(self.modalities) != self.model.get("in_channels"):
            problems.append(
                f"{len(self.modalities)} modalities {self.modalities} but the network takes "
                f"{self.model.get('in_channels')} input channels"
            )
        if len(set(self.modalities)) != len(self.modalities) or not all(isinstance(m, str) for m in self.modalities):
            problems.append(f"modalities {self.modalities} must be distinct names")
        if self.spacing is not None and (
            len(self.spacing) != 3 or not all(isinstance(s, (int, float)) and 0 < s < 100 for s in self.spacing)
        ):
            problems.append(f"spacing is {self.spacing}, expected three voxel sizes in mm")
        if not set(self.optional_modalities) < set(self.modalities):
            problems.append(
                f"optional modalities {self.optional_modalities} must be some (not all) of the modalities {self.modalities}"
            )
        if self.beta is not None and not float(self.beta) > 0:
            problems.append(f"beta is {self.beta}, expected a positive number or None")
        if not problems:
            problems += patch_problems(self.model, self.patch_size)
        if problems:
            raise CheckpointError(f"{source}: inconsistent metadata: {'; '.join(problems)}")


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint found on disk: its name (file stem), path, source and metadata."""

    name: str
    path: Path
    source: str  # "user" or "bundled"
    metadata: CheckpointMetadata


@dataclasses.dataclass(frozen=True)
class BadCheckpoint:
    """A checkpoint file that cannot be used: its name, path, source and why."""

    name: str
    path: Path
    source: str
    problem: str


def user_checkpoint_dir() -> Path:
    """Return the per-user checkpoint folder (``$LESIONSEG_HOME/checkpoints`` or the XDG data folder)."""
    home = os.environ.get("LESIONSEG_HOME")
    if home:
        return Path(home).expanduser() / "checkpoints"
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home).expanduser() / "napari-lesionseg" / "checkpoints"


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, metadata: CheckpointMetadata) -> Path:
    """Write `model`'s weights and `metadata` to `path` atomically and return the path.

    The metadata's network config must describe `model` exactly (same parameter names and
    shapes), so that `load_checkpoint` can rebuild it; otherwise `CheckpointError` is raised.
    """
    path = Path(path)
    metadata.validate(str(path))
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    check_state_fits(state, metadata.model, f"{path}: the model to save")
    try:
        text = metadata.to_json()
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the metadata cannot be written as JSON: {err}") from err
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": text, "state_dict": state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(
    name_or_path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointMetadata]:
    """Return the network of a checkpoint (in eval mode, on `device`) and its metadata.

    Raises:
        CheckpointError: unknown name, missing, corrupt, unsafe or foreign file, inconsistent metadata, or
            weights that do not fit the network the metadata describes.
    """
    path = resolve_checkpoint(name_or_path)
    try:
        payload = _read_payload(path)
        metadata = _metadata_from_payload(payload, path)
        state = payload["state_dict"]
        check_state_fits(state, metadata.model, str(path))
        check_finite(state, path)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{_shadow_note(path)}") from err
    try:
        model = build_model(metadata.model)
    except LesionSegError as err:
        raise CheckpointError(f"{path}: the network config in its metadata cannot be built: {err}") from err
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), metadata


def read_metadata(name_or_path: str | os.PathLike[str]) -> CheckpointMetadata:
    """Return a checkpoint's metadata without loading its weights into memory (they are memory-mapped).

    Metadata is cached per file, keyed by its inode, size and modification time, so that refreshing a
    selector re-reads only the files that changed.
    """
    path = resolve_checkpoint(name_or_path)
    stat = path.stat()
    key, stamp = path.resolve(), (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _METADATA_CACHE.get(key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, _metadata_from_payload(_read_payload(path), path))
        _METADATA_CACHE[key] = cached
    return copy.deepcopy(cached[1])


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """Return the file of a checkpoint path, or of a name (user folder first, then bundled)."""
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith(SUFFIX) or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file ({SUFFIX})")
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} does not exist")
        return path
    folders = (user_checkpoint_dir(), BUNDLED_DIR)
    for folder in folders:
        candidate = folder / f"{text}{SUFFIX}"
        if candidate.is_file():
            return candidate
        if candidate.exists():
            raise CheckpointError(f"checkpoint {text!r}: {candidate} is not a checkpoint file (a folder?)")
    available = sorted({path.stem for folder in folders for path in _checkpoint_files(folder)})
    raise CheckpointError(
        f"no checkpoint named {text!r} in {user_checkpoint_dir()} or {BUNDLED_DIR}; available: "
        f"{', '.join(available) if available else 'none'} (`lesionseg checkpoints` lists them)"
    )


def list_checkpoints() -> list[CheckpointInfo]:
    """Return the usable user checkpoints, then the bundled ones; unusable files are skipped with a warning."""
    found, bad = scan_checkpoints()
    for item in bad:
        warnings.warn(f"skipping unusable checkpoint: {item.problem}", stacklevel=2)
    return found


def scan_checkpoints() -> tuple[list[CheckpointInfo], list[BadCheckpoint]]:
    """The usable checkpoints (user first, then bundled) and the unusable ones with their problem.

    A file is unusable when it is not a readable napari-lesionseg checkpoint or its weights hold NaN
    or infinite values. A bundled checkpoint that a user file of the same name shadows is listed with
    a bad user file's problem saying so, since its name then reaches the bad file.
    """
    found: list[CheckpointInfo] = []
    bad: list[BadCheckpoint] = []
    for source, folder in (("user", user_checkpoint_dir()), ("bundled", BUNDLED_DIR)):
        for path in _checkpoint_files(folder):
            try:
                metadata = read_metadata(path)
                problem = _weights_problem(path)
            except CheckpointError as err:
                problem = str(err)
            if problem is None:
                found.append(CheckpointInfo(path.stem, path, source, metadata))
            else:
                bad.append(BadCheckpoint(path.stem, path, source, problem))
    bundled = {info.name: info.path for info in found if info.source == "bundled"}
    return found, [_with_shadow_note(item, bundled) for item in bad]


def _checkpoint_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{SUFFIX}") if p.is_file()) if folder.is_dir() else []


def _weights_problem(path: Path) -> str | None:
    """Why the weights of `path` are unusable (NaN/Inf), else None; cached per file version."""
    stat = path.stat()
    key, stamp = path.resolve(), (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _WEIGHTS_CACHE.get(key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, non_finite_problem(_read_payload(path)["state_dict"], path))
        _WEIGHTS_CACHE[key] = cached
    return cached[1]


def _with_shadow_note(item: BadCheckpoint, bundled: Mapping[str, Path]) -> BadCheckpoint:
    if item.source != "user" or item.name not in bundled:
        return item
    return dataclasses.replace(item, problem=item.problem + _shadow_note(item.path))


def _shadow_note(path: Path) -> str:
    """For a user file named like a bundled checkpoint: that the name reaches it, and how to get the bundled one."""
    bundled = BUNDLED_DIR / path.name
    if path.parent != user_checkpoint_dir() or not bundled.is_file():
        return ""
    return (
        f"; it shadows the bundled checkpoint {path.stem!r} (a name reaches the user file first): remove or rename "
        f"it, or give the bundled file's path {bundled}"
    )


def _read_payload(path: Path) -> dict[str, Any]:
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(
            f"{path} is not a napari-lesionseg checkpoint: not a PyTorch zip archive (corrupt, truncated or another "
            "kind of file; nothing in it was executed)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch.load raises many types (RuntimeError, UnpicklingError, EOFError...) for bad files
        reason = _short_reason(err)
        raise CheckpointError(
            f"{path} is not a readable napari-lesionseg checkpoint (corrupt, truncated, or not saved by "
            f"save_checkpoint; nothing in it was executed): {reason}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a napari-lesionseg checkpoint (no {FORMAT!r} marker)")
    if not isinstance(payload.get("format_version"), int) or payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload.get('format_version')!r}; this napari-lesionseg ({__version__}) "
            f"reads format {FORMAT_VERSION} or older: upgrade napari-lesionseg"
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its 'state_dict' is not a mapping of names to tensors")
    return payload


def _short_reason(err: Exception) -> str:
    """The informative line of a torch.load error (for refused pickles, the unpickler's own line)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    refusal = [line.split(". Please use")[0] for line in lines if line.startswith("WeightsUnpickler error")]
    return f"{type(err).__name__}: {(refusal or lines or [''])[0]}"


def _metadata_from_payload(payload: Mapping[str, Any], path: Path) -> CheckpointMetadata:
    try:
        data = json.loads(payload.get("metadata"))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its metadata is not JSON text: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: its metadata is {type(data).__name__}, expected a JSON object")
    return CheckpointMetadata.from_dict(data, source=str(path))
