"""The one prediction entry point: checkpoint + images -> model space -> normalised stack -> fused result.

`iter_predict` is what `lesionseg predict`, every dock and `lesionseg bench` call; nothing else
matches modalities to a checkpoint, resamples images into the model's space (`engine.model_space`),
checks its normalisation or normalises images for inference. It yields a `ProgressEvent` after
every batch (on the native grid) and returns the `InferenceResult` on the reference image's grid.
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
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from napari_lesionseg._progress import CancelToken, drain
from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.intensity import NORMALIZATION, normalize_stack_with_foreground
from napari_lesionseg.data.subject import Subject
from napari_lesionseg.data.volumes import Volume
from napari_lesionseg.engine.checkpoints import CheckpointMetadata, load_checkpoint
from napari_lesionseg.engine.coverage import coverage_note, input_coverage
from napari_lesionseg.engine.intracranial import intracranial_region
from napari_lesionseg.engine.model_space import COARSE_FACTOR, ModelSpace, model_space, to_model, to_native
from napari_lesionseg.engine.patches import check_workload, make_grid, tta_variants
from napari_lesionseg.engine.requirements import check_modalities, required_modalities, trained_spacing
from napari_lesionseg.engine.results import InferenceResult, ProgressEvent
from napari_lesionseg.engine.run import iter_inference
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import CheckpointError, InvalidInputError, LesionSegWarning
from napari_lesionseg.models import size_divisor

__all__ = ["Checkpoint", "Images", "check_normalisation", "check_not_blank", "iter_predict", "loaded_checkpoint", "predict"]

#: A bundled checkpoint name, a checkpoint file, or an already loaded ``(model, metadata)`` pair.
Checkpoint = str | Path | tuple[nn.Module, CheckpointMetadata]
#: A loaded subject, or raw (not normalised) images by modality name: volumes, or arrays on one grid.
Images = Subject | Mapping[str, np.ndarray] | Mapping[str, Volume]
#: One input: its canonical array and the grid it lies on (None: unknown, taken as the reference's).
_Input = tuple[np.ndarray, Geometry | None]
#: Head regions under this many mL (a 46 mm cube, a tenth of an adult brain) get a note: intensities are normalised
#: on the region alone, so a small crop's lesion calls mean little.
SMALL_FIELD_ML = 100.0


def iter_predict(
    images: Images,
    checkpoint: Checkpoint,
    settings: InferenceSettings | None = None,
    *,
    cancel: CancelToken | threading.Event | None = None,
    before_network: Callable[[], Any] | None = None,
    geometry: Geometry | None = None,
    acquired: Mapping[str, Geometry] | None = None,
) -> Generator[ProgressEvent, None, InferenceResult]:
    """Segment `images` with `checkpoint` in the model's space, yielding progress after every batch.

    Args:
        images: a `Subject`, ``{modality: Volume}`` or ``{modality: (Z, Y, X) array}``; modalities are
            matched to the checkpoint's by name (extra ones are ignored, missing required ones refused,
            missing optional ones fed as background).
        checkpoint: see `Checkpoint`.
        settings: inference settings; a missing patch size takes the checkpoint's.
        cancel: stops the run before its next batch.
        before_network: called once the stack is normalised, just before the first batch (the
            Inference dock waits there for its layers).
        geometry: the grid of arrays given without one (e.g. layers); without any geometry the run
            stays on the arrays' grid.
        acquired: for arrays resampled onto that grid, the grid each was acquired on (a subject's
            `sources` are taken by themselves): nothing is reported where a required one has no data.

    Patches outside the head foreground the normalisation finds are skipped (probability 0) unless
    ``settings.skip_background`` is off; no lesion is reported outside the brain estimated from the
    FLAIR (`engine.intracranial`) unless ``settings.brain_only`` is off.

    Returns:
        The generator's value: the result on the reference image's native grid, with
        ``timings["normalisation"]`` (and ``timings["resample"]`` when it ran in model space).

    Raises:
        CheckpointError: the checkpoint is unreadable, lacks inputs that are loaded, or was trained
            with another normalisation.
        InvalidInputError: images of different shapes, or non-finite voxels.
    """
    model, metadata = loaded_checkpoint(checkpoint)
    available, native = _inputs(images, geometry)
    acquired = dict(acquired or {})
    modalities = check_modalities(metadata, tuple(available))
    check_normalisation(metadata)
    notes: list[str] = []
    space = None if native is None else _space(metadata, native, notes)
    started = time.perf_counter()
    stack, foreground = _model_stack([None if m is None else available[m] for m in modalities], metadata.modalities, space)
    _note_small_field(notes, foreground, space)
    settings = _settings(settings or InferenceSettings(), metadata, space)
    brain = _brain_region(stack, metadata.modalities, foreground, space) if settings.brain_only else None
    covered, foreground = _within_coverage(available, acquired, modalities, metadata, space, native, foreground, notes)
    if brain is not None:
        covered = brain if covered is None else covered & brain
        foreground = foreground & brain
    normalisation = time.perf_counter() - started
    grid = make_grid(stack.shape[1:], settings.patch_size, settings.overlap, settings.border)  # type: ignore[arg-type]
    variants = len(tta_variants(settings.tta))
    check_workload(grid, channels=len(stack), batch_size=settings.batch_size, variants=variants, modes=len(settings.fusion))
    if before_network is not None:
        before_network()
    skip = foreground if settings.skip_background else None
    run = iter_inference(model, stack, settings, cancel=cancel, size_divisor=size_divisor(metadata.model), foreground=skip)
    run = _finite(run, metadata.name)
    if space is None or not space.resampled:
        result = _within((yield from run), covered)
        timings = {**result.timings, "normalisation": normalisation}
        return dataclasses.replace(result, timings=timings, messages=(*notes, *result.messages), model_space=space)
    result = _within((yield from _native_events(run, space)), covered)
    return _back_to_native(result, space, normalisation, notes)


def predict(
    images: Images,
    checkpoint: Checkpoint,
    settings: InferenceSettings | None = None,
    *,
    callback: Callable[[ProgressEvent], Any] | None = None,
    cancel: CancelToken | threading.Event | None = None,
    geometry: Geometry | None = None,
) -> InferenceResult:
    """Run :func:`iter_predict` to the end (or to cancellation), passing every event to `callback`."""
    return drain(iter_predict(images, checkpoint, settings, cancel=cancel, geometry=geometry), callback)


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


def _inputs(images: Images, geometry: Geometry | None) -> tuple[dict[str, _Input], Geometry | None]:
    """Every input as (array, its grid), and the reference (FLAIR) grid, or None when none is known."""
    if isinstance(images, Subject):
        sources = {m: images.sources.get(m, volume) for m, volume in images.images.items()}
        check_not_blank(sources)
        check_volumetric(sources)
        return {m: (v.data, v.geometry) for m, v in sources.items()}, images.geometry
    if not isinstance(images, Mapping) or not images:
        raise InvalidInputError("expected a subject or a {modality: image} mapping with at least one image")
    check_not_blank(images)
    check_volumetric(images)
    inputs = {m: (v.data, v.geometry) if isinstance(v, Volume) else (v, geometry) for m, v in images.items()}
    if geometry is None:
        grids = {m.casefold(): g for m, (_, g) in inputs.items() if g is not None}
        geometry = grids.get("flair") or next(iter(grids.values()), None)
    return inputs, geometry


def check_not_blank(images: Mapping[str, Volume | np.ndarray]) -> None:
    """Refuse (`InvalidInputError`, naming the file when known) an image whose voxels are all equal: a blank
    export or a failed conversion holds nothing to segment, and would be normalised to all background."""
    for modality, image in images.items():
        data = image.data if isinstance(image, Volume) else np.asarray(image)
        if data.size and float(data.min()) == float(data.max()):
            path = image.path if isinstance(image, Volume) else None
            where = f"every voxel of the {modality}" if path is None else f"{path}: every voxel of the {modality}"
            raise InvalidInputError(f"{where} is {float(data.min()):g}; an empty image holds nothing to segment")


def _within_coverage(
    available: Mapping[str, _Input], acquired: Mapping[str, Geometry], modalities: Sequence[str | None],
    metadata: CheckpointMetadata, space: ModelSpace | None, native: Geometry | None, foreground: np.ndarray,
    notes: list[str],
) -> tuple[np.ndarray | None, np.ndarray]:
    """Where every required input has data (None: everywhere) and the foreground cut to it, noting which input
    covers less of the reference's field of view (an optional one only noted: the network runs without it there)."""
    required = set(required_modalities(metadata))
    reference = next((m for m in available if m.casefold() == "flair"), next(iter(available)))
    sources = {
        channel: (m, acquired.get(m) or available[m][1])
        for m, channel in zip(modalities, metadata.modalities)
        if m is not None
    }
    covered, shares = input_coverage([s for c, s in sources.items() if c in required], space, native)
    if covered is not None:
        _note(notes, coverage_note(shares, reference))
        foreground = foreground & covered
    _, partial = input_coverage([s for c, s in sources.items() if c not in required], space, native)
    if partial:
        _note(notes, coverage_note(partial, reference, required=False))
    return covered, foreground


def check_volumetric(images: Mapping[str, Volume | np.ndarray]) -> None:
    """Refuse an image of a single slice (a 2-D picture stored as 3-D): it has no 3-D patch to segment, and a run
    on it reports 0 mL, which reads as "no lesion"."""
    for modality, image in images.items():
        shape = np.shape(image.data if isinstance(image, Volume) else image)
        if len(shape) == 3 and 1 in shape:
            path = image.path if isinstance(image, Volume) else None
            shown = image.geometry.source_shape if isinstance(image, Volume) else shape
            where = f"the {modality}" if path is None else f"{path}: the {modality}"
            raise InvalidInputError(
                f"{where} holds a single slice (shape {tuple(shown)}); segmentation needs the whole 3-D scan"
            )


def _space(metadata: CheckpointMetadata, native: Geometry, notes: list[str]) -> ModelSpace:
    """The model's space for `native`, warning when the spacing is unknown or the input far coarser."""
    spacing = trained_spacing(metadata)
    if spacing is None:
        spacing = native.spacing
        _note(notes, f"checkpoint {metadata.name!r} does not record the voxel size it was trained at: assuming the "
              f"input's ({_mm(spacing)}), so nothing is resampled")  # fmt: skip
    coarse = [f"{axis} {n:.2g} mm" for axis, n, m in zip("SPL", native.spacing, spacing) if n > COARSE_FACTOR * m]
    if coarse:
        _note(notes, f"the input's voxels ({', '.join(coarse)}) are more than {COARSE_FACTOR:g}x the model's "
              f"({_mm(spacing)}): lesions smaller than a voxel cannot be resolved; segmenting anyway")  # fmt: skip
    space = model_space(native, spacing)
    if space.resampled:
        notes.append(space.describe())
    return space


def _model_stack(
    inputs: list[_Input | None], channels: list[str], space: ModelSpace | None
) -> tuple[np.ndarray, np.ndarray]:
    """The normalised ``(C, Z, Y, X)`` stack on the model's grid (a missing optional channel is 0) and its head
    foreground (the patches wholly outside it need no network)."""
    present = [(c, i) for c, i in zip(channels, inputs) if i is not None]
    arrays = []
    for channel, (data, source) in present:
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 3:
            raise InvalidInputError(f"{channel}: expected a 3-D (Z, Y, X) volume, got shape {data.shape}")
        if space is not None and source is not None:
            if data.shape != source.shape:
                raise InvalidInputError(f"{channel}: an image of shape {data.shape} does not fit its grid {source.shape}")
            data = to_model(data, source, space)
        arrays.append(data)
    shapes = {channel: array.shape for (channel, _), array in zip(present, arrays)}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{m} {s}" for m, s in shapes.items())
        raise InvalidInputError(f"the images must lie on one voxel grid, got {listed}")
    stack, foreground = normalize_stack_with_foreground(np.stack(arrays))
    normalised = iter(stack)
    zeros = np.zeros(arrays[0].shape, np.float32)
    return np.stack([next(normalised) if i is not None else zeros for i in inputs]), foreground


def _note_small_field(notes: list[str], foreground: np.ndarray, space: ModelSpace | None) -> None:
    """Warn when the head region is far smaller than a head: its intensities are normalised on it alone."""
    if space is None:
        return
    head_ml = np.count_nonzero(foreground) * float(np.prod(space.spacing)) / 1000.0
    if head_ml < SMALL_FIELD_ML:
        _note(notes, f"the images hold only {head_ml:.3g} mL of head (a brain alone is over 1,000 mL): intensities are "
              "normalised on that alone, so lesions may be missed or invented; give the whole scan")  # fmt: skip


def _brain_region(
    stack: np.ndarray, channels: Sequence[str], foreground: np.ndarray, space: ModelSpace | None
) -> np.ndarray | None:
    """Where a lesion may be reported (`engine.intracranial`), from the FLAIR channel; None: everywhere."""
    if space is None or "FLAIR" not in channels:
        return None
    return intracranial_region(stack[list(channels).index("FLAIR")], foreground, space.spacing)


def _settings(settings: InferenceSettings, metadata: CheckpointMetadata, space: ModelSpace | None) -> InferenceSettings:
    """The checkpoint's patch size when none is given; the priority slice moved into model space."""
    if settings.patch_size is None:
        settings = dataclasses.replace(settings, patch_size=tuple(metadata.patch_size))
    if space is not None and space.resampled and settings.priority_slice is not None:
        index = space.native_slice(settings.priority_slice, settings.priority_axis)
        settings = dataclasses.replace(settings, priority_slice=index)
    return settings


def _native_events(
    run: Generator[ProgressEvent, None, InferenceResult], space: ModelSpace
) -> Generator[ProgressEvent, None, InferenceResult]:
    """Pass the engine's events on with their boxes and partial results on the native grid."""
    probability = np.zeros(space.geometry.shape, np.float32)
    try:
        while True:
            try:
                event = next(run)
            except StopIteration as stop:
                return stop.value
            if event.partial is not None:
                probability[tuple(slice(int(a), int(b)) for a, b in zip(*event.box))] = event.partial
            yield space.native_event(event, probability)
    finally:
        run.close()


def _within(result: InferenceResult, covered: np.ndarray | None) -> InferenceResult:
    """The result with probability 0 (no lesion) outside the required inputs' coverage (`engine.coverage`)."""
    if covered is None:
        return result
    probabilities = {mode: np.where(covered, p, 0.0).astype(p.dtype) for mode, p in result.probabilities.items()}
    uncertainty = None if result.uncertainty is None else np.where(covered, result.uncertainty, 0.0).astype(result.uncertainty.dtype)
    return dataclasses.replace(
        result, probabilities=probabilities, uncertainty=uncertainty, mask=probabilities[result.primary] >= result.threshold
    )


def _back_to_native(result: InferenceResult, space: ModelSpace, normalisation: float, notes: list[str]) -> InferenceResult:
    """The run's probabilities and uncertainty resampled onto the native grid, thresholded there."""
    started = time.perf_counter()
    probabilities = {mode: to_native(p, space) for mode, p in result.probabilities.items()}
    uncertainty = None if result.uncertainty is None else to_native(result.uncertainty, space)
    mask = probabilities[result.primary] >= result.threshold
    timings = {**result.timings, "normalisation": normalisation, "resample": time.perf_counter() - started}
    return dataclasses.replace(
        result, probabilities=probabilities, uncertainty=uncertainty, mask=mask, timings=timings,
        messages=(*notes, *result.messages), model_space=space,
    )  # fmt: skip


def _note(notes: list[str], text: str) -> None:
    notes.append(text)
    warnings.warn(text, LesionSegWarning, stacklevel=4)


def _mm(spacing: tuple[float, ...]) -> str:
    return "x".join(f"{s:.2g}" for s in spacing) + " mm"
