"""Timing of the patch inference engine (what `lesionseg predict` and the napari app run).

Two workloads, on each network preset and device:

* ``sample``: a 2 mm sample subject (the packaged one, else a phantom written to a temporary
  folder), read from disk, normalised and segmented with the preset's patch size.
* ``paper``: the paper's MSSEG workload (Sec. III.C): a 5-channel 128x224x256 volume, 64^3
  patches, 50 % overlap on the paper's padded grid (5x8x9 = 360 patches) and four augmentations:
  1,440 patch predictions. The volume is synthetic (an ellipsoidal "head" with noise) written as
  five NIfTI files, so I/O and normalisation are real; network time does not depend on content,
  and the networks are randomly initialised for the same reason.

Stages: ``io`` (reading the subject), ``normalisation``, and from the engine ``extract`` (cutting
patches), ``network`` (forward passes, sigmoid, inverse augmentation) and ``fusion`` (spline fusion
and uncertainty). The same workload also runs through MONAI's ``sliding_window_inference``
(``mode="constant"``) with the same network, grid, batch, device, autocast and test-time
augmentation (a predictor that runs the same flips), against our engine in ``uniform`` mode with
no uncertainty, so both do equal work; the ratio ``ours / monai`` is reported.

``max_patches`` times a block of at most that many patches (the grid's first ``a x b x c``
corner, cut out of the volume so that both engines lay out exactly that block) and extrapolates
network, extraction and fusion linearly to the whole grid; every entry says what was measured
and what was extrapolated. Timings are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_lesionseg._progress import CancelToken
from napari_lesionseg.constants import MODALITIES, OVERLAP, PATCH_SIZE
from napari_lesionseg.data.intensity import NORMALIZATION
from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.devices import autocast, resolve_device
from napari_lesionseg.engine.fusion import FusionAccumulator
from napari_lesionseg.engine.patches import PatchGrid, augment, invert, make_grid, tta_variants
from napari_lesionseg.engine.predict import Checkpoint, predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import LesionSegError

__all__ = ["PAPER_SHAPE", "TARGETS", "default_devices", "run_inference_benchmark"]

#: The MSSEG volume size of Sec. III.C.
PAPER_SHAPE: tuple[int, int, int] = (128, 224, 256)
#: Targets of the issue: fusion <= 5 % of the network time, ours <= MONAI at equal work, the paper
#: workload (patches + network + fusion, without I/O and normalisation) under 10 s on one GPU.
TARGETS: dict[str, float] = {"fusion_over_network_max": 0.05, "ours_over_monai_max": 1.0, "paper_gpu_engine_s_max": 10.0}


#: Voxel -> RAS+ affine of 1 mm arrays whose axes point superior, posterior, left (the canonical order).
_SPL_AFFINE = np.array([[0.0, 0.0, -1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


@dataclasses.dataclass(frozen=True)
class _Workload:
    name: str
    folder: Path
    modalities: tuple[str, ...]
    patch_size: tuple[int, int, int] | None  # None: the preset's
    border: str
    note: str


def default_devices() -> list[str]:
    """The CPU, plus CUDA where one is present."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def run_inference_benchmark(
    *,
    devices: Sequence[str] | None = None,
    presets: Sequence[str] = ("paper", "compact"),
    workloads: Sequence[str] = ("sample", "paper"),
    max_patches: int | None = None,
    batch_size: int | None = None,
    monai: bool = True,
    paper_shape: Sequence[int] = PAPER_SHAPE,
    paper_patch_size: Sequence[int] = PATCH_SIZE,
    model_overrides: Mapping[str, Any] | None = None,
    sample_folder: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time every (workload, preset, device) and return a JSON-able report.

    Args:
        devices: e.g. ``["cpu", "cuda"]``; the CPU plus CUDA when present by default.
        presets: network presets (`models.model_config`), randomly initialised.
        workloads: ``"sample"`` (2 mm sample subject) and/or ``"paper"`` (the MSSEG workload).
        max_patches: time at most this many patches per run and extrapolate (None: all).
        batch_size: patches per network call (default: 2 on the CPU, 8 on CUDA).
        monai: also run MONAI's ``sliding_window_inference`` at equal work.
        paper_shape: the paper workload's volume (smaller for smoke runs).
        paper_patch_size: its patch size (64^3 in the paper).
        model_overrides: network config overrides for every preset (tiny networks in tests).
        sample_folder: the sample subject folder (default: the packaged sample, else a phantom).
        seed: seed of the synthetic volume and of the network weights.
    """
    devices = list(devices) if devices is not None else default_devices()
    with tempfile.TemporaryDirectory(prefix="lesionseg-bench-") as tmp:
        prepared = [_prepare(name, Path(tmp), paper_shape, paper_patch_size, sample_folder, seed) for name in workloads]
        results = []
        for workload in prepared:
            for device in devices:
                for preset in presets:
                    if isinstance(workload, str):
                        results.append({"workload": workload.split(":")[0], "skipped": workload.split(":", 1)[1]})
                        continue
                    results.append(
                        _run_one(workload, preset, device, batch_size, max_patches, monai, dict(model_overrides or {}), seed)
                    )
    return {
        "benchmark": "inference",
        "machine": machine_info(),
        "targets": TARGETS,
        "results": results,
        "notes": [
            "networks are randomly initialised: their cost does not depend on the weights",
            "'extrapolated' entries scale network, extraction and fusion by total/measured patches",
            "monai: sliding_window_inference(mode='constant') with the same network, grid, batch, device, autocast "
            "and the same test-time flips; 'ours' in that comparison fuses uniform without uncertainty",
        ],
    }


def machine_info() -> dict[str, Any]:
    """Where the numbers come from."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    with contextlib.suppress(ImportError):
        import monai

        info["monai"] = monai.__version__
    return info


# --- workloads ----------------------------------------------------------------------------------------


def _prepare(
    name: str, tmp: Path, shape: Sequence[int], patch: Sequence[int], sample_folder: str | Path | None, seed: int
) -> _Workload | str:
    """The workload's subject folder on disk, or ``"name:reason"`` when it cannot be made."""
    if name == "paper":
        folder = _write_synthetic_subject(tmp / "paper", tuple(shape), MODALITIES, seed)
        note = f"synthetic {len(MODALITIES)}-channel {tuple(shape)} volume, {tuple(patch)} patches, paper grid (padded)"
        return _Workload("paper", folder, MODALITIES, tuple(patch), "pad", note)  # type: ignore[arg-type]
    if name == "sample":
        try:
            folder = Path(sample_folder) if sample_folder is not None else _sample_folder(tmp)
        except (LesionSegError, ImportError, OSError) as err:
            return f"sample:no sample subject ({err}); make one with `lesionseg sample`"
        from napari_lesionseg.data.naming import find_subject_files

        modalities = tuple(find_subject_files(folder)[0])
        return _Workload("sample", folder, modalities, None, "flush", f"sample subject {folder.name}")
    raise LesionSegError(f"unknown workload {name!r}; expected 'sample' or 'paper'")


def _sample_folder(tmp: Path) -> Path:
    from napari_lesionseg.data.samples import sample_subject

    try:
        return sample_subject(0)
    except LesionSegError:
        from napari_lesionseg.data.phantom import write_phantoms

        write_phantoms(tmp / "sample", 1, seed=0, spacing=2.0)
        return next(p for p in sorted((tmp / "sample").iterdir()) if p.is_dir())


def _write_synthetic_subject(folder: Path, shape: tuple[int, int, int], modalities: Sequence[str], seed: int) -> Path:
    """An ellipsoidal 'head' with noise per modality, as 1 mm NIfTI files stored in canonical (S, P, L) order."""
    from napari_lesionseg.data.geometry import Geometry
    from napari_lesionseg.data.volumes import save_volume

    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    radius = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    head = radius < 0.8
    geometry = Geometry.from_affine(_SPL_AFFINE, shape)  # canonical array == stored array, of `shape`
    for k, modality in enumerate(modalities):
        image = np.where(head, 300.0 + 50.0 * k, 5.0) + rng.normal(0.0, 20.0, size=shape)
        save_volume(image.astype(np.float32), geometry, folder / f"bench_{modality}.nii.gz", dtype=np.float32)
    return folder


# --- one run -------------------------------------------------------------------------------------------


def _run_one(
    workload: _Workload,
    preset: str,
    device_name: str,
    batch_size: int | None,
    max_patches: int | None,
    with_monai: bool,
    overrides: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    from napari_lesionseg.data.intensity import normalize_stack
    from napari_lesionseg.data.subject import load_subject
    from napari_lesionseg.models import build_model, default_patch_size, model_config

    device = resolve_device(device_name)
    config = model_config(preset, in_channels=len(workload.modalities), **overrides)
    torch.manual_seed(seed)
    model = build_model(config).to(device).eval()
    patch = workload.patch_size or default_patch_size(config)
    batch = batch_size or (8 if device.type == "cuda" else 2)

    io_s, subject = _timed(lambda: load_subject(workload.folder))
    raw = subject.stack(workload.modalities)
    norm_s, stack = _timed(lambda: normalize_stack(raw))
    settings = InferenceSettings(
        patch_size=tuple(patch), overlap=OVERLAP, fusion=("spline",), tta="paper", border=workload.border,
        batch_size=batch, device=str(device), stream_partial=False,
    )  # fmt: skip
    full_grid = make_grid(stack.shape[1:], patch, OVERLAP, workload.border)
    block = _block(full_grid, max_patches)
    # Ours goes through the one prediction entry point on the raw block; MONAI gets that block normalised
    # as the entry point normalises it, so both see the same input.
    images = dict(zip(workload.modalities, _crop(raw, full_grid, block)))
    measured = normalize_stack(np.stack(list(images.values())))
    scale = len(full_grid) / int(np.prod(block))
    checkpoint = (model, _metadata(preset, config, workload.modalities, patch))

    _warm_up(images, checkpoint, settings, device)
    ours = predict(images, checkpoint, settings)
    engine = {stage: ours.timings[stage] * scale for stage in ("extract", "network", "fusion", "total")}
    entry: dict[str, Any] = {
        "workload": workload.name,
        "description": workload.note,
        "device": str(device),
        "model": preset,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "shape": list(stack.shape),
        "patch_size": list(patch),
        "overlap": OVERLAP,
        "border": workload.border,
        "tta": "paper",
        "batch_size": batch,
        "grid": list(full_grid.counts),
        "patches_total": len(full_grid),
        "predictions_total": len(full_grid) * len(tta_variants("paper")),
        "patches_measured": int(np.prod(block)),
        "measured_block": list(block),
        "extrapolated": scale != 1.0,
        "stages_s": {"io": io_s, "normalisation": norm_s, **{k: engine[k] for k in ("extract", "network", "fusion")}},
        "engine_s": engine["total"],
        "end_to_end_s": io_s + norm_s + engine["total"],
        "patches_per_s": len(full_grid) / engine["total"],
        "predictions_per_s": len(full_grid) * len(tta_variants("paper")) / engine["total"],
        "fusion_over_network": engine["fusion"] / engine["network"] if engine["network"] > 0 else None,
        "fusion_modes_s": {mode: seconds * scale for mode, seconds in _fusion_costs(ours.grid, device).items()},
    }
    if with_monai:
        entry["monai"] = _compare_with_monai(images, checkpoint, measured, settings, device, scale)
    entry["targets_met"] = _targets_met(entry)
    return entry


def _compare_with_monai(
    images: dict[str, np.ndarray],
    checkpoint: Checkpoint,
    stack: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
    scale: float,
) -> dict[str, Any]:
    """Ours (uniform, no uncertainty) against MONAI's sliding window on the same grid: seconds and ratio."""
    model = checkpoint[0]
    uniform = dataclasses.replace(settings, fusion=("uniform",), uncertainty=False)
    if device.type == "cuda":  # MONAI's batches may differ in layout: let cuDNN tune them untimed too
        _monai_sliding_window(model, stack, settings, device)
    ours_s, ours = _timed(lambda: predict(images, checkpoint, uniform))
    monai_s, monai_probability = _timed(lambda: _monai_sliding_window(model, stack, settings, device))
    return {
        "ours_uniform_s": ours_s * scale,
        "monai_s": monai_s * scale,
        "ours_over_monai": ours_s / monai_s,
        "max_abs_difference": float(np.abs(ours.probability - monai_probability).max()),
    }


def _monai_sliding_window(model: nn.Module, stack: np.ndarray, settings: InferenceSettings, device: torch.device) -> np.ndarray:
    """MONAI's constant-weight sliding window with the engine's flips, autocast and grid (padding included)."""
    from monai.inferers import sliding_window_inference

    patch = tuple(settings.patch_size)  # type: ignore[arg-type]
    variants = tta_variants(settings.tta)

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([augment(batch, v) for v in variants])
        with autocast(device, settings.amp):
            logits = model(inputs)
        probabilities = torch.sigmoid(logits.float()).unflatten(0, (len(variants), batch.shape[0]))
        return torch.stack([invert(probabilities[k], v) for k, v in enumerate(variants)]).mean(dim=0)

    image = torch.from_numpy(stack)[None].to(device)
    before = [p // 2 if settings.border == "pad" else 0 for p in patch]
    after = [p - b if settings.border == "pad" else 0 for p, b in zip(patch, before)]
    with torch.inference_mode(), _cudnn_benchmark(device):
        if any(before):  # the engine's padded grid, laid out explicitly for MONAI
            image = torch.nn.functional.pad(image, [q for b, a in zip(before[::-1], after[::-1]) for q in (b, a)])
        fused = sliding_window_inference(image, patch, settings.batch_size, predictor, overlap=settings.overlap, mode="constant")
        crop = tuple(slice(b, b + s) for b, s in zip(before, stack.shape[1:]))
        result = fused[(0, 0, *crop)].float().cpu().numpy()
    return result


def _fusion_costs(grid: PatchGrid, device: torch.device) -> dict[str, float]:
    """Seconds to fuse a grid of random predictions in each mode alone, and in all four with uncertainty."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    predictions = torch.rand((1, 4, *grid.patch_size), generator=generator).to(device)
    costs = {}
    runs = {
        **{mode: ((mode,), None) for mode in ("tiling", "uniform", "spline", "gaussian")},
        "all+uncertainty": (("spline", "uniform", "tiling", "gaussian"), "spline"),
    }
    for name, (modes, uncertainty_mode) in runs.items():
        accumulator = FusionAccumulator(grid, modes, device=device, uncertainty_mode=uncertainty_mode)
        _synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            for index in range(len(grid)):
                accumulator.add(predictions, [index])
        _synchronize(device)
        costs[name] = time.perf_counter() - started
    return costs


def _targets_met(entry: dict[str, Any]) -> dict[str, bool | None]:
    monai = entry.get("monai")
    on_gpu_paper = entry["workload"] == "paper" and entry["device"].startswith("cuda") and entry["model"] == "paper"
    ratio = entry["fusion_over_network"]
    return {
        "fusion_over_network": None if ratio is None else ratio <= TARGETS["fusion_over_network_max"],
        "ours_over_monai": None if not monai else monai["ours_over_monai"] <= TARGETS["ours_over_monai_max"],
        "paper_gpu_engine_s": entry["engine_s"] < TARGETS["paper_gpu_engine_s_max"] if on_gpu_paper else None,
    }


# --- helpers -------------------------------------------------------------------------------------------


def _block(grid: PatchGrid, max_patches: int | None) -> tuple[int, int, int]:
    """Patches per axis of the measured corner block: the whole grid, or at most `max_patches`, grown evenly."""
    counts = list(grid.counts)
    if max_patches is None or max_patches >= len(grid):
        return tuple(counts)  # type: ignore[return-value]
    # a padded grid has at least two patches along every axis longer than zero
    block = [min(2, c) if grid.border == "pad" else 1 for c in counts]
    while True:
        growable = [a for a in (2, 1, 0) if block[a] < counts[a] and np.prod(block) // block[a] * (block[a] + 1) <= max_patches]
        if not growable:
            return tuple(block)  # type: ignore[return-value]
        axis = min(growable, key=lambda a: block[a])
        block[axis] += 1


def _crop(stack: np.ndarray, grid: PatchGrid, block: Sequence[int]) -> np.ndarray:
    """The part of the volume whose grid (same patch, overlap and border) is exactly the first `block` patches."""
    slices = []
    for axis, (count, n) in enumerate(zip(grid.counts, block)):
        if n == count:
            slices.append(slice(None))
            continue
        stride = int(grid.axis_origins[axis][1] - grid.axis_origins[axis][0])
        extent = (n - 1) * stride + (0 if grid.border == "pad" else grid.patch_size[axis])
        slices.append(slice(0, extent))
    return np.ascontiguousarray(stack[(slice(None), *slices)])


def _warm_up(images: dict[str, np.ndarray], checkpoint: Checkpoint, settings: InferenceSettings, device: torch.device) -> None:
    """Untimed work, so that allocator growth and cuDNN autotuning stay out of the timings.

    On CUDA a whole run, since cuDNN tunes each batch shape (the last batch is often smaller) on
    first sight; elsewhere one batch is enough and keeps the CPU benchmark short.
    """
    if device.type == "cuda":
        predict(images, checkpoint, settings)
        return
    token = CancelToken()
    predict(images, checkpoint, settings, cancel=token, callback=lambda _: token.cancel())


def _metadata(preset: str, config: dict[str, Any], modalities: Sequence[str], patch: Sequence[int]) -> CheckpointMetadata:
    """What a checkpoint of this randomly initialised network would record (timing does not depend on weights)."""
    return CheckpointMetadata(
        name=f"bench-{preset}", model=config, loss="fbeta", beta=None, modalities=list(modalities),
        patch_size=[int(p) for p in patch], normalization=dict(NORMALIZATION),
    )  # fmt: skip


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda" or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = fn()
    return time.perf_counter() - started, value


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
