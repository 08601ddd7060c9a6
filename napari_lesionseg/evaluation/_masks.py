"""Input checks shared by the evaluation modules (`lesions`, `surface`); `metrics` converts masks first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_lesionseg.errors import InvalidInputError


def require_bool_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """`mask` as an array, if it is a boolean 3-D mask; a clear error otherwise."""
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.ndim != 3:
        raise InvalidInputError(
            f"{name}: expected a boolean 3-D (Z, Y, X) mask, got dtype {mask.dtype} with shape {mask.shape}; "
            "convert it with napari_lesionseg.evaluation.metrics.as_binary_mask"
        )
    return mask


def require_mask_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A prediction and a reference as boolean 3-D masks of one shape."""
    pred, gt = require_bool_mask(pred, "prediction"), require_bool_mask(gt, "reference")
    if pred.shape != gt.shape:
        raise InvalidInputError(f"prediction shape {pred.shape} differs from reference shape {gt.shape}")
    return pred, gt


def check_spacing_mm(spacing: Sequence[float]) -> np.ndarray:
    """Voxel spacing as three positive finite millimetre values."""
    values = np.asarray(spacing, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values) & (values > 0)):
        raise InvalidInputError(f"spacing must be three positive millimetre values (Z, Y, X), got {spacing!r}")
    return values
