"""The one intensity normalisation, shared by training and inference.

MR intensities have no absolute scale, so each modality is normalised inside the head/brain
foreground, which makes the result invariant to any positive affine rescaling of the input
(``a * image + b`` with ``a > 0`` gives the same output):

1. foreground: voxels above a robust threshold ``p2 + 0.1 * (p98 - p2)`` (the "robust range"
   threshold of FSL BET, Smith 2002), keeping the largest connected component with its holes
   (ventricles, dark lesions) filled;
2. clip to the [0.5, 99.5] percentiles of the foreground;
3. z-score with the foreground mean and standard deviation;
4. set the background to 0.

A stack of modalities shares one foreground, the union of the per-modality foregrounds, so every
channel has the same background. Fallbacks, without NaN: an image with no foreground (constant,
or one voxel) becomes all background (0) with a `RuntimeWarning`; a foreground of constant
intensity becomes 0 (zero-centred, unit scale).

Example:
    >>> x = normalize_stack(subject.stack(("FLAIR", "T1w", "T2w", "PDw")))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from napari_lesionseg.errors import InvalidInputError

__all__ = ["NORMALIZATION", "foreground_mask", "normalize_intensity", "normalize_stack", "normalize_stack_with_foreground"]

#: JSON-able description of the normalisation; checkpoints store it and inference checks it.
NORMALIZATION: dict[str, object] = {
    "method": "foreground_percentile_zscore",
    "foreground_robust_range": [2.0, 98.0],
    "foreground_threshold_fraction": 0.1,
    "foreground_cleaning": "largest_component_fill_holes",
    "stack_foreground": "union",
    "clip_percentiles": [0.5, 99.5],
    "background": 0.0,
}

_ROBUST_RANGE = tuple(NORMALIZATION["foreground_robust_range"])  # type: ignore[arg-type]
_THRESHOLD_FRACTION = float(NORMALIZATION["foreground_threshold_fraction"])  # type: ignore[arg-type]
_CLIP_PERCENTILES = tuple(NORMALIZATION["clip_percentiles"])  # type: ignore[arg-type]
_BACKGROUND = float(NORMALIZATION["background"])  # type: ignore[arg-type]


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Head/brain foreground of a 3-D image: robust threshold, largest component, holes filled.

    Returns:
        Boolean array of the image's shape; all False for a constant image.
    """
    image = _checked_volume(image, "image")
    low, high = np.percentile(image, _ROBUST_RANGE)
    threshold = low + _THRESHOLD_FRACTION * (high - low)
    above = image > threshold
    if not above.any():
        return above
    components, count = ndimage.label(above)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        above = components == int(np.argmax(sizes))
    return _fill_holes(above)


def normalize_intensity(image: np.ndarray, *, foreground: np.ndarray | None = None) -> np.ndarray:
    """Normalise one modality: clip to foreground percentiles, z-score in the foreground, background 0.

    Args:
        image: 3-D intensity array of any real dtype (finite values only).
        foreground: boolean mask of the same shape; `foreground_mask(image)` when None.

    Returns:
        float32 array of the image's shape.
    """
    image = _checked_volume(image, "image")
    foreground = foreground_mask(image) if foreground is None else np.asarray(foreground, dtype=bool)
    if foreground.shape != image.shape:
        raise InvalidInputError(
            f"Foreground of shape {foreground.shape} does not fit the image of shape {image.shape}."
        )
    out = np.full(image.shape, _BACKGROUND, dtype=np.float32)
    if not foreground.any():
        warnings.warn(
            f"Image of shape {image.shape} has no foreground (constant intensity?); "
            f"it is normalised to all {_BACKGROUND}.",
            RuntimeWarning,
            stacklevel=2,
        )
        return out
    values = image[foreground]
    low, high = np.percentile(values, _CLIP_PERCENTILES)
    clipped = np.clip(values, low, high)
    mean, std = float(clipped.mean()), float(clipped.std())
    out[foreground] = (clipped - mean) / std if std > 0 else 0.0
    return out


def normalize_stack(stack: np.ndarray) -> np.ndarray:
    """Normalise a ``(C, Z, Y, X)`` stack channel by channel inside the union of their foregrounds."""
    return normalize_stack_with_foreground(stack)[0]


def normalize_stack_with_foreground(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`normalize_stack` and the ``(Z, Y, X)`` union foreground it normalised in (outside it every channel is 0)."""
    stack = np.asarray(stack)
    if stack.ndim != 4 or 0 in stack.shape:
        raise InvalidInputError(f"Expected a non-empty (C, Z, Y, X) stack of modalities, found shape {stack.shape}.")
    foreground = np.logical_or.reduce(_per_channel(foreground_mask, stack))
    if not foreground.any():
        warnings.warn(
            "No channel of the stack has a foreground; it is normalised to all background.", RuntimeWarning, stacklevel=2
        )
        return np.full(stack.shape, _BACKGROUND, dtype=np.float32), foreground
    return np.stack(_per_channel(lambda channel: normalize_intensity(channel, foreground=foreground), stack)), foreground


def _per_channel(function: Callable[[np.ndarray], np.ndarray], stack: np.ndarray) -> list[np.ndarray]:
    """`function` of every channel, on as many threads as `_threads` allows (numpy and scipy release the GIL).

    The same results as one after the other; 1.6 times faster on two cores for a 1 mm stack.
    """
    workers = min(len(stack), _threads())
    if workers == 1:
        return [function(channel) for channel in stack]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, stack))


def _threads() -> int:
    """torch's thread count where torch is loaded (the CLI's --threads sets it), else the CPUs this process may use.

    torch is never imported for this: the napari reader uses this module and starts without it.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, torch.get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` plus the background not connected to the volume's faces (faster than binary_fill_holes)."""
    background, _ = ndimage.label(~mask)
    faces = np.concatenate([np.moveaxis(background, axis, 0)[[0, -1]].ravel() for axis in range(3)])
    outside = np.unique(faces[faces > 0])
    return ~np.isin(background, outside)


def _checked_volume(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or 0 in image.shape:
        raise InvalidInputError(f"Expected a non-empty 3-D {what}, found shape {image.shape}.")
    if image.dtype.kind not in "biuf":
        raise InvalidInputError(f"Expected a real-valued {what}, found dtype {image.dtype}.")
    image = image.astype(np.float64, copy=False)
    if not np.isfinite(image).all():
        bad = image.size - int(np.count_nonzero(np.isfinite(image)))
        raise InvalidInputError(f"The {what} has {bad} NaN or infinite voxels; replace them before normalising.")
    return image
