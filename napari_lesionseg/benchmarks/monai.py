"""Our engine against MONAI's ``sliding_window_inference``, side by side in one run.

Ways to run the same work (network, patches, overlap, batch, device and flips; uniform fusion,
no uncertainty, so that both sides fuse alike):

* ``ours``: the fast path as the product runs it (`engine.predict`: the resolved precision,
  channels-last on the CPU, the network's inference form of `models.fused`, background patches
  skipped), and the same without skipping (``ours_all_patches``);
* ``monai``: MONAI as its users run it: float32, contiguous tensors (``mode="constant"``);
* ``monai_tuned``: MONAI tuned like ours: the same autocast dtype and memory format, on the
  network as it is given;
* ``monai_fused``: as ``monai_tuned`` on our inference form of the network, so that it and
  ``ours_all_patches`` do strictly equal work and differ only in patching and fusion.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_lesionseg.engine.patches import augment, invert, tta_variants
from napari_lesionseg.engine.precision import (
    as_memory_format,
    autocast,
    memory_format,
    model_memory_format,
    precision_name,
    resolve_precision,
)
from napari_lesionseg.engine.predict import Checkpoint, predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.models.fused import fused_for_inference

__all__ = ["compare_with_monai", "monai_sliding_window", "timed"]


def compare_with_monai(
    images: dict[str, np.ndarray],
    checkpoint: Checkpoint,
    stack: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
    scale: float,
) -> dict[str, Any]:
    """Seconds of each way (times `scale` when a block stands for the grid), the ratios, and the differences."""
    model = checkpoint[0]
    uniform = dataclasses.replace(settings, fusion=("uniform",), uncertainty=False)
    dtype = resolve_precision(settings.precision, device)
    tuned = {"dtype": dtype, "fmt": memory_format(device)}
    users = {"dtype": torch.float32, "fmt": torch.contiguous_format}
    network = fused_for_inference(model)
    if device.type == "cuda":  # MONAI's batches may differ in layout: let cuDNN tune them untimed too
        monai_sliding_window(model, stack, settings, device, **tuned)
        monai_sliding_window(model, stack, settings, device, **users)
        monai_sliding_window(network, stack, settings, device, **tuned)
    ours_s, ours = timed(lambda: predict(images, checkpoint, uniform))
    all_s, all_patches = timed(lambda: predict(images, checkpoint, dataclasses.replace(uniform, skip_background=False)))
    monai_s, _ = timed(lambda: monai_sliding_window(model, stack, settings, device, **users))
    tuned_s, _ = timed(lambda: monai_sliding_window(model, stack, settings, device, **tuned))
    fused_s, monai_fused = timed(lambda: monai_sliding_window(network, stack, settings, device, **tuned))
    return {
        "precision": precision_name(dtype),
        "ours_s": ours_s * scale,
        "ours_all_patches_s": all_s * scale,
        "monai_s": monai_s * scale,
        "monai_tuned_s": tuned_s * scale,
        "monai_fused_s": fused_s * scale,
        "patches_skipped": ours.skipped,
        "ours_over_monai": ours_s / monai_s,
        "ours_over_monai_tuned": ours_s / tuned_s,
        "ours_all_patches_over_monai_tuned": all_s / tuned_s,
        "ours_all_patches_over_monai_fused": all_s / fused_s,
        # every patch, the same network, precision and layout on both sides: what differs is the fusion and the grid
        "max_abs_difference": float(np.abs(all_patches.probability - monai_fused).max()),
    }


def monai_sliding_window(
    model: nn.Module,
    stack: np.ndarray,
    settings: InferenceSettings,
    device: torch.device,
    *,
    dtype: torch.dtype = torch.float32,
    fmt: torch.memory_format = torch.contiguous_format,
) -> np.ndarray:
    """MONAI's constant-weight sliding window with the engine's flips and grid (padding included), in `dtype` and `fmt`."""
    from monai.inferers import sliding_window_inference

    patch = tuple(settings.patch_size)  # type: ignore[arg-type]
    variants = tta_variants(settings.tta)

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([augment(batch, v) for v in variants])
        with autocast(device, dtype):
            logits = model(as_memory_format(inputs, fmt))
        probabilities = torch.sigmoid(logits.float()).unflatten(0, (len(variants), batch.shape[0]))
        return torch.stack([invert(probabilities[k], v) for k, v in enumerate(variants)]).mean(dim=0)

    image = torch.from_numpy(stack)[None].to(device)
    before = [p // 2 if settings.border == "pad" else 0 for p in patch]
    after = [p - b if settings.border == "pad" else 0 for p, b in zip(patch, before)]
    model.to(device).eval()
    with torch.inference_mode(), _cudnn_benchmark(device), model_memory_format(model, fmt):
        if any(before):  # the engine's padded grid, laid out explicitly for MONAI
            image = torch.nn.functional.pad(image, [q for b, a in zip(before[::-1], after[::-1]) for q in (b, a)])
        fused = sliding_window_inference(image, patch, settings.batch_size, predictor, overlap=settings.overlap, mode="constant")
        crop = tuple(slice(b, b + s) for b, s in zip(before, stack.shape[1:]))
        result = fused[(0, 0, *crop)].float().cpu().numpy()
    return result


def timed(fn: Any) -> tuple[float, Any]:
    """Seconds `fn()` took, and its value (the normalisation's warnings on synthetic data silenced)."""
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = fn()
    return time.perf_counter() - started, value


@contextlib.contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda" or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
