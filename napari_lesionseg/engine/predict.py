"""The one prediction entry point: checkpoint + images -> matched modalities -> normalised stack -> fused result.

`iter_predict` is what `lesionseg predict`, every dock and `lesionseg bench` call; nothing else
matches modalities to a checkpoint, checks its normalisation or normalises images for inference.
It yields a `ProgressEvent` after every batch and returns the `InferenceResult` on the images' grid.
Before the network runs it checks the workload (`patches.check_workload`: memory, patch count);
a network whose output is not finite (NaN weights) stops the run with a `CheckpointError`.

Example:
    >>> result = predict(load_subject("sub-01"), "fbeta_1.5")                       # doctest: +SKIP
    >>> result = predict({"FLAIR": flair, "T1w": t1, "T2w": t2, "PDw": pd}, "fbeta_1.5")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from napari_lesionseg._progress import CancelToken, drain
from napari_lesionseg.data.intensity import NORMALIZATION, normalize_stack_with_foreground
from napari_lesionseg.data.subject import Subject
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, check_modalities, load_checkpoint
from napari_lesionseg.engine.patches import check_workload, make_grid, tta_variants
from napari_lesionseg.engine.results import InferenceResult, ProgressEvent
from napari_lesionseg.engine.run import iter_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import CheckpointError, InvalidInputError
from napari_lesionseg.models import size_divisor

__all__ = ["Checkpoint", "Images", "check_normalisation", "iter_predict", "loaded_checkpoint", "predict"]

#: A bundled checkpoint name, a checkpoint file, or an already loaded ``(model, metadata)`` pair.
Checkpoint = str | Path | tuple[nn.Module, CheckpointMetadata]
#: A loaded subject, or raw (not normalised) images by modality name, all on one grid.
Images = Subject | Mapping[str, np.ndarray]


def iter_predict(
    images: Images,
    checkpoint: Checkpoint,
    settings: InferenceSettings | None = None,
    *,
    cancel: CancelToken | threading.Event | None = None,
    before_network: Callable[[], Any] | None = None,
) -> Generator[ProgressEvent, None, InferenceResult]:
    """Segment `images` with `checkpoint`, yielding progress after every batch.

    Args:
        images: a `Subject`, or ``{modality: (Z, Y, X) array}``; modalities are matched to the
            checkpoint's by name (extra ones are ignored, missing ones refused).
        checkpoint: see `Checkpoint`.
        settings: inference settings; a missing patch size takes the checkpoint's.
        cancel: stops the run before its next batch.
        before_network: called once the stack is normalised, just before the first batch (the
            Inference dock waits there for its layers).

    Patches outside the head foreground the normalisation finds are skipped (probability 0) unless
    ``settings.skip_background`` is off.

    Returns:
        The generator's value: the result on the images' grid, with ``timings["normalisation"]``.

    Raises:
        CheckpointError: the checkpoint is unreadable, lacks inputs that are loaded, or was trained
            with another normalisation.
        InvalidInputError: images of different shapes, or non-finite voxels.
    """
    model, metadata = loaded_checkpoint(checkpoint)
    available = _by_modality(images)
    modalities = check_modalities(metadata, tuple(available))
    check_normalisation(metadata)
    started = time.perf_counter()
    stack, foreground = normalize_stack_with_foreground(_stack([available[m] for m in modalities], modalities))
    normalisation = time.perf_counter() - started
    settings = settings or InferenceSettings()
    if settings.patch_size is None:
        settings = dataclasses.replace(settings, patch_size=tuple(metadata.patch_size))
    grid = make_grid(stack.shape[1:], settings.patch_size, settings.overlap, settings.border)  # type: ignore[arg-type]
    variants = len(tta_variants(settings.tta))
    check_workload(grid, channels=len(stack), batch_size=settings.batch_size, variants=variants, modes=len(settings.fusion))
    if before_network is not None:
        before_network()
    divisor = size_divisor(metadata.model)
    skip = foreground if settings.skip_background else None
    run = iter_inference(model, stack, settings, cancel=cancel, size_divisor=divisor, foreground=skip)
    result = yield from _finite(run, metadata.name)
    return dataclasses.replace(result, timings={**result.timings, "normalisation": normalisation})


def predict(
    images: Images,
    checkpoint: Checkpoint,
    settings: InferenceSettings | None = None,
    *,
    callback: Callable[[ProgressEvent], Any] | None = None,
    cancel: CancelToken | threading.Event | None = None,
) -> InferenceResult:
    """Run :func:`iter_predict` to the end (or to cancellation), passing every event to `callback`."""
    return drain(iter_predict(images, checkpoint, settings, cancel=cancel), callback)


def loaded_checkpoint(checkpoint: Checkpoint) -> tuple[nn.Module, CheckpointMetadata]:
    """The ``(model, metadata)`` of `checkpoint`, loaded on the CPU unless it already is."""
    if isinstance(checkpoint, tuple):
        return checkpoint
    return load_checkpoint(checkpoint, device="cpu")


def check_normalisation(metadata: CheckpointMetadata) -> None:
    """Refuse a checkpoint trained with another normalisation method; warn if only its settings differ."""
    stored = dict(getattr(metadata, "normalization", None) or {})
    if not stored or stored == NORMALIZATION:
        return
    if stored.get("method") != NORMALIZATION["method"]:
        raise CheckpointError(
            f"checkpoint {metadata.name!r} was trained on intensities normalised with {stored.get('method')!r}, "
            f"but this version normalises with {NORMALIZATION['method']!r}; its predictions would be meaningless"
        )
    changed = sorted(k for k in set(stored) | set(NORMALIZATION) if stored.get(k) != NORMALIZATION.get(k))
    warnings.warn(
        f"checkpoint {metadata.name!r} was trained with different normalisation settings ({', '.join(changed)}); "
        "predictions may be less accurate",
        RuntimeWarning,
        stacklevel=3,
    )


def _finite(run: Generator[ProgressEvent, None, InferenceResult], name: str) -> Generator[ProgressEvent, None, InferenceResult]:
    """Pass on the run's events; stop it as soon as the network's fused output is not finite."""
    try:
        while True:
            try:
                event = next(run)
            except StopIteration as stop:
                result: InferenceResult = stop.value
                break
            if event.partial is not None and not np.isfinite(event.partial).all():
                raise _not_finite(name, event.partial)
            yield event
    finally:
        run.close()
    if not np.isfinite(result.probability).all():
        raise _not_finite(name, result.probability)
    return result


def _not_finite(name: str, probability: np.ndarray) -> CheckpointError:
    bad = probability.size - int(np.count_nonzero(np.isfinite(probability)))
    return CheckpointError(
        f"checkpoint {name!r}: the network's output is NaN or infinite ({bad:,} of {probability.size:,} voxels of "
        "the probability map); its weights are broken (a diverged training?) or the file is damaged. The run was "
        "stopped; use another checkpoint"
    )


def _by_modality(images: Images) -> dict[str, np.ndarray]:
    if isinstance(images, Subject):
        return {modality: volume.data for modality, volume in images.images.items()}
    if not isinstance(images, Mapping) or not images:
        raise InvalidInputError("expected a subject or a {modality: image} mapping with at least one image")
    return dict(images)


def _stack(images: list[np.ndarray], modalities: list[str]) -> np.ndarray:
    """The raw ``(C, Z, Y, X)`` float32 stack, after checking that every image is 3-D on one grid."""
    arrays = [np.asarray(image, dtype=np.float32) for image in images]
    for modality, array in zip(modalities, arrays):
        if array.ndim != 3:
            raise InvalidInputError(f"{modality}: expected a 3-D (Z, Y, X) volume, got shape {array.shape}")
    shapes = {modality: array.shape for modality, array in zip(modalities, arrays)}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{m} {s}" for m, s in shapes.items())
        raise InvalidInputError(f"the images must lie on one voxel grid, got {listed}")
    return np.stack(arrays)
