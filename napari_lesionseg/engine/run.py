"""The patch inference engine: batches of patches, test-time augmentation, fusion, progress, cancel.

One run cuts a ``(C, Z, Y, X)`` normalised stack into the patches of a :class:`PatchGrid`,
predicts each batch of patches under every augmentation (one network call on all variants),
maps the predictions back, and adds them to a :class:`FusionAccumulator` at once, so memory is
O(volume), not O(patches). Several fusion modes are fused from the same predictions; the first is
the primary one (mask, uncertainty, streamed partial result).

* Devices (`engine.devices`): ``"auto"`` is CUDA, then MPS, then CPU. The network runs in its
  inference form (`models.fused`: batch norm folded, ReLU fused) under ``torch.inference_mode``
  in the settings' precision (`engine.precision`: bfloat16 autocast and channels-last-3d on a CPU
  with native bfloat16, float16 autocast on CUDA); the sigmoid and the fusion are float32. The sums
  live on the network's device when they fit in half its free memory, else on the CPU.
* Background: given a foreground mask, patches that hold none of it are not sent to the network;
  they are fused as probability 0 and counted in `InferenceResult.skipped`.
* CUDA out of memory: the batch is halved and retried; at one patch the sums move to the CPU; only
  if one patch still does not fit is a `LesionSegError` raised. Each step is reported as a message.
* Streaming: :func:`iter_inference` yields a :class:`ProgressEvent` after every batch and returns
  the :class:`InferenceResult`; :func:`run_inference` drives it with an optional callback. A
  :class:`CancelToken` is checked before every batch, so a run stops within one batch and returns
  what it has fused so far (``completed=False``; voxels no patch reached are 0).

Example:
    >>> settings = InferenceSettings(patch_size=(32, 32, 32), fusion=("spline", "uniform"))
    >>> result = run_inference(model, stack, settings, callback=print)  # doctest: +SKIP
    >>> result.probability.shape, result.mask.dtype  # doctest: +SKIP
    ((Z, Y, X), dtype('bool'))
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_lesionseg._progress import CancelToken, drain
from napari_lesionseg.constants import PATCH_SIZE
from napari_lesionseg.engine.devices import resolve_device
from napari_lesionseg.engine.fusion import FusionAccumulator
from napari_lesionseg.engine.patches import PatchGrid, augment, invert, make_grid, tta_variants
from napari_lesionseg.engine.precision import (
    as_memory_format,
    autocast,
    convert_model,
    memory_format,
    precision_name,
    resolve_precision,
)
from napari_lesionseg.engine.results import InferenceResult, ProgressEvent
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.errors import InvalidInputError, LesionSegError
from napari_lesionseg.models.fused import fused_for_inference, inference_copy

__all__ = ["iter_inference", "run_inference"]

log = logging.getLogger(__name__)

#: Share of the free device memory the fusion sums may take before they go to the CPU instead.
_DEVICE_MEMORY_SHARE = 0.5


def iter_inference(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    settings: InferenceSettings | None = None,
    *,
    cancel: CancelToken | threading.Event | None = None,
    size_divisor: int = 1,
    foreground: np.ndarray | None = None,
) -> Generator[ProgressEvent, None, InferenceResult]:
    """Predict a normalised ``(C, Z, Y, X)`` stack patch by patch, yielding progress after every batch.

    Args:
        model: a network mapping ``(B, C, D, H, W)`` float32 to logits ``(B, 1, D, H, W)``; it is
            moved to the device and put in eval mode for the run (its mode is restored after).
        image: the normalised stack (finite values), channels in the network's order.
        settings: how to cut, predict and fuse (defaults: 64^3, 50 %, spline, paper TTA).
        cancel: stops the run before the next batch when set.
        size_divisor: every patch axis must be a multiple of it (2 ** poolings of the network).
        foreground: ``(Z, Y, X)`` bool; patches holding none of it are skipped (probability 0).
            None sends every patch to the network.

    Returns:
        The generator's return value (``StopIteration.value``) is the `InferenceResult`.
    """
    started = time.perf_counter()
    settings = settings or InferenceSettings()
    volume = _checked_image(image, model)
    patch = _checked_patch_size(settings.patch_size or PATCH_SIZE, size_divisor)
    grid = make_grid(tuple(volume.shape[1:]), patch, settings.overlap, settings.border)
    active = np.ones(len(grid), dtype=bool) if foreground is None else grid.touching(foreground)
    device = resolve_device(settings.device)
    order = grid.order(settings.priority_slice, settings.priority_axis)
    position = 0
    dtype = resolve_precision(settings.precision, device)
    with _inference_network(model, device, settings.fused_network, dtype) as network:
        run = _Run(network, volume, grid, settings, device, active)
        while position < len(order):
            if cancel is not None and cancel.is_set():
                break
            indices = order[position : run.batch_end(order, position)]
            if not run.step(indices):  # out of memory: the run has adapted, try the batch again
                continue
            position += len(indices)
            yield run.event(indices, position)
    return run.result(position, time.perf_counter() - started)


def run_inference(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    settings: InferenceSettings | None = None,
    *,
    callback: Callable[[ProgressEvent], Any] | None = None,
    cancel: CancelToken | threading.Event | None = None,
    size_divisor: int = 1,
    foreground: np.ndarray | None = None,
) -> InferenceResult:
    """Run :func:`iter_inference` to the end (or to cancellation), passing every event to `callback`."""
    events = iter_inference(model, image, settings, cancel=cancel, size_divisor=size_divisor, foreground=foreground)
    return drain(events, callback)


class _Run:
    """The state of one inference run: device tensors, accumulator, batch size, timers."""

    def __init__(
        self,
        network: nn.Module,
        volume: torch.Tensor,
        grid: PatchGrid,
        settings: InferenceSettings,
        device: torch.device,
        active: np.ndarray,
    ) -> None:
        self.network, self.grid, self.settings, self.device, self.active = network, grid, settings, device, active
        self.dtype = resolve_precision(settings.precision, device)
        self.network_dtype = next((p.dtype for p in network.parameters()), torch.float32)
        self.memory_format = memory_format(device)
        self.skipped = 0
        self.background_fused = np.zeros(len(grid), dtype=bool)
        self.variants = tta_variants(settings.tta)
        self.batch_size = int(settings.batch_size)
        self.primary = settings.fusion[0]
        self.messages: list[str] = []
        self._pending: list[str] = []
        self.volume = volume.to(device)
        self.origins = grid.origins
        self.boxes = grid.boxes()
        self.timer = _StageTimer(device)
        self.accumulator = FusionAccumulator(
            grid,
            settings.fusion,
            device=self._accumulation_device(),
            uncertainty_mode=self.primary if settings.uncertainty else None,
        )

    def batch_end(self, order: np.ndarray, position: int) -> int:
        """Where the batch starting at `position` of `order` ends: after `batch_size` patches for the network.

        Skipped patches between them ride along (they cost no network call), so every call is full.
        """
        sent = np.cumsum(self.active[order[position:]])
        return position + min(int(np.searchsorted(sent, self.batch_size)) + 1, len(sent))

    def step(self, indices: np.ndarray) -> bool:
        """Predict and fuse one batch; False after an out-of-memory error the run has adapted to."""
        sent = indices[self.active[indices]]
        try:
            with torch.inference_mode():
                self._fuse_background(indices[~self.active[indices]])
                if len(sent):
                    with self.timer("extract"):
                        batch = self._extract(sent)
                    with self.timer("network"):
                        probabilities = self._predict(batch)
                    with self.timer("fusion"):
                        self.accumulator.add(probabilities, sent)
        except torch.cuda.OutOfMemoryError as err:
            self._recover_from_oom(err)
            return False
        return True

    def _fuse_background(self, skipped: np.ndarray) -> None:
        """Fuse probability 0 for the skipped patches not fused yet (a batch retried after running out of memory)."""
        pending = skipped[~self.background_fused[skipped]]
        if len(pending):
            with self.timer("fusion"):
                self.accumulator.add_background(pending)  # in place, allocating nothing: no out-of-memory error halfway
            self.background_fused[pending] = True
            self.skipped += len(pending)

    def event(self, indices: np.ndarray, done: int) -> ProgressEvent:
        """The progress event after the batch `indices`, carrying the notices raised since the last one."""
        boxes = self.boxes[indices]
        box = np.stack([boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)])
        partial = self.accumulator.partial(self.primary, box) if self.settings.stream_partial else None
        message = "; ".join(self._pending) or None
        self._pending.clear()
        return ProgressEvent(done, len(self.grid), box, boxes, partial, message)

    def result(self, done: int, seconds: float) -> InferenceResult:
        acc = self.accumulator
        probabilities = {mode: acc.result(mode) for mode in acc.modes}
        timings = {**self.timer.seconds(), "total": seconds}
        return InferenceResult(
            probabilities=probabilities,
            weight_sums={mode: acc.weight_sum(mode) for mode in acc.modes},
            uncertainty=acc.uncertainty() if acc.uncertainty_mode else None,
            mask=probabilities[self.primary] >= self.settings.threshold,
            grid=self.grid,
            primary=self.primary,
            threshold=float(self.settings.threshold),
            done=done,
            total=len(self.grid),
            timings=timings,
            device=str(self.device),
            messages=tuple(self.messages),
            precision=precision_name(self.dtype),
            skipped=self.skipped,
        )

    def _extract(self, indices: np.ndarray) -> torch.Tensor:
        """The batch of patches, zero where a patch reaches outside the volume."""
        channels = self.volume.shape[0]
        batch = torch.zeros((len(indices), channels, *self.grid.patch_size), device=self.device)
        for b, index in enumerate(indices):
            origin = self.origins[index]
            start, stop = self.boxes[index]
            src = (slice(None), *(slice(int(a), int(c)) for a, c in zip(start, stop)))
            dst = (slice(None), *(slice(int(a - o), int(c - o)) for a, c, o in zip(start, stop, origin)))
            batch[b][dst] = self.volume[src]
        return batch

    def _predict(self, batch: torch.Tensor) -> torch.Tensor:
        """``(B, V, pz, py, px)`` float32 probabilities, one per augmentation, mapped back."""
        inputs = torch.cat([augment(batch, v) for v in self.variants]) if len(self.variants) > 1 else batch
        precast = self.network_dtype != torch.float32  # the network was cast to its precision: no autocast
        with contextlib.nullcontext() if precast else autocast(self.device, self.dtype):
            logits = self.network(as_memory_format(inputs.to(self.network_dtype), self.memory_format))
        expected = (inputs.shape[0], 1, *self.grid.patch_size)
        if tuple(logits.shape) != expected:
            raise InvalidInputError(
                f"the network returned logits of shape {tuple(logits.shape)} for input {tuple(inputs.shape)}; "
                f"expected {expected} (one lesion channel, same spatial size)"
            )
        probabilities = torch.sigmoid(logits.float())[:, 0].unflatten(0, (len(self.variants), batch.shape[0]))
        return torch.stack([invert(probabilities[k], v) for k, v in enumerate(self.variants)], dim=1)

    def _accumulation_device(self) -> torch.device:
        if self.device.type != "cuda":
            return self.device
        needed = FusionAccumulator.required_bytes(self.grid.shape, len(self.settings.fusion), self.settings.uncertainty)
        free, _ = torch.cuda.mem_get_info(self.device)
        if needed <= _DEVICE_MEMORY_SHARE * free:
            return self.device
        self._note(f"fusion sums ({needed / 2**20:.0f} MiB) do not fit beside the network on {self.device}: on the CPU")
        return torch.device("cpu")

    def _recover_from_oom(self, err: Exception) -> None:
        """Halve the batch, else move the fusion sums to the CPU, else give up with a clear error."""
        if self.batch_size > 1:
            self.batch_size //= 2
            self._note(f"out of memory on {self.device}; retrying with batches of {self.batch_size} patches")
        elif self.accumulator.device.type != "cpu":
            self.accumulator.to("cpu")
            self._note(f"out of memory on {self.device} with one patch per batch; fusion sums moved to the CPU")
        else:
            raise LesionSegError(
                f"out of memory on {self.device} predicting one {self.grid.patch_size} patch with "
                f"{len(self.variants)} augmentation(s); use --device cpu, a smaller patch size or --no-tta"
            ) from err
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _note(self, message: str) -> None:
        log.warning(message)
        self.messages.append(message)
        self._pending.append(message)


class _StageTimer:
    """Seconds per stage; on CUDA measured with events, so timing never stalls the GPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._seconds: dict[str, float] = defaultdict(float)
        self._events: dict[str, list[tuple[Any, Any]]] = defaultdict(list)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events[stage].append((start, end))
        else:
            started = time.perf_counter()
            yield
            self._seconds[stage] += time.perf_counter() - started

    def seconds(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize()
            for stage, pairs in self._events.items():
                self._seconds[stage] += sum(s.elapsed_time(e) for s, e in pairs) / 1000.0
            self._events.clear()
        return {stage: self._seconds.get(stage, 0.0) for stage in ("extract", "network", "fusion")}


@contextlib.contextmanager
def _inference_network(model: nn.Module, device: torch.device, fused: bool, dtype: torch.dtype) -> Iterator[nn.Module]:
    """The run's network: an eval copy of `model` on `device` (its inference form if `fused`), in the device's memory format.

    The copy is made from the current weights, so `model` keeps its mode and layout (it is moved to
    `device`); cuDNN autotunes the fixed patch shape for the run and is reset after. On the CPU the
    inference form is cast to a reduced `dtype` once and runs without autocast, which would cast
    every weight on every call (8 % of the compact network's time) and run the upsampling in float32;
    float16 on the CPU stays under autocast.
    """
    cudnn_benchmark = torch.backends.cudnn.benchmark
    model.to(device)
    network = fused_for_inference(model) if fused else inference_copy(model)
    if fused and device.type == "cpu" and dtype == torch.bfloat16:
        network.to(dtype)
    convert_model(network, memory_format(device))
    torch.backends.cudnn.benchmark = device.type == "cuda" or cudnn_benchmark
    try:
        yield network
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _checked_image(image: np.ndarray | torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The stack as a float32 CPU tensor, after checking its shape, values and channel count."""
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise InvalidInputError(f"expected a (C, Z, Y, X) array of normalised modalities, got {type(image).__name__}")
    volume = torch.as_tensor(image).detach().to("cpu", torch.float32)
    if volume.ndim != 4 or 0 in volume.shape:
        raise InvalidInputError(f"expected a non-empty (C, Z, Y, X) stack of modalities, got {tuple(volume.shape)}")
    bad = int((~torch.isfinite(volume)).sum())
    if bad:
        raise InvalidInputError(
            f"the input stack of shape {tuple(volume.shape)} has {bad} NaN or infinite voxel(s); "
            "fix or mask them before inference (the network would spread them over whole patches)"
        )
    expected = _input_channels(model)
    if expected is not None and expected != volume.shape[0]:
        raise InvalidInputError(
            f"the network takes {expected} modalities but the input stack has {volume.shape[0]} channels; "
            "give one channel per modality the network was trained on, in its order"
        )
    return volume


def _checked_patch_size(patch_size: Sequence[int] | int, divisor: int) -> tuple[int, int, int]:
    patch = (patch_size,) * 3 if isinstance(patch_size, int) else tuple(int(p) for p in patch_size)
    if len(patch) != 3 or any(p < 1 for p in patch):
        raise InvalidInputError(f"patch size must be three positive integers (Z, Y, X), got {patch_size!r}")
    if any(p % divisor for p in patch):
        raise InvalidInputError(
            f"patch size {patch} does not fit the network: every side must be a multiple of {divisor} "
            f"(2 ** its poolings), e.g. {tuple(max(divisor, round(p / divisor) * divisor) for p in patch)}"
        )
    return patch  # type: ignore[return-value]


def _input_channels(model: nn.Module) -> int | None:
    """In-channels of the network's first 3-D convolution, if it has one."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))), None)
    return None if first is None else int(first.in_channels)
