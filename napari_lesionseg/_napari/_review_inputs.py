"""What the Lesion review computes from two labels layers: the masks, their spacing and affine, and the
probability of the inference run whose mask is the prediction (for APR and the PR curve)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from napari.layers import Labels

from napari_lesionseg._napari._session import RunRecord
from napari_lesionseg._napari.metadata import geometry_from_layer_metadata
from napari_lesionseg.errors import InvalidInputError

__all__ = ["review_arguments", "run_probability"]


def review_arguments(prediction: Labels | None, reference: Labels | None, runs: Sequence[RunRecord]) -> dict[str, Any]:
    """Keyword arguments of `evaluation.review.review_masks` for the pair (`InvalidInputError` if unusable)."""
    if prediction is None:
        raise InvalidInputError(
            "Nothing to review: choose a prediction (run inference, or pick another rater's mask as the prediction)."
        )
    if reference is None:
        raise InvalidInputError(
            f"No reference to review {prediction.name!r} against (this subject may have none): to walk its lesions "
            "and correct them, make a corrected mask ('New from prediction') and choose it as the reference."
        )
    if prediction is reference:
        raise InvalidInputError(f"Prediction and reference are both {prediction.name!r}: choose two different layers.")
    geometry = geometry_from_layer_metadata(prediction.metadata) or geometry_from_layer_metadata(reference.metadata)
    return {
        "pred": np.asarray(prediction.data) != 0,
        "reference": np.asarray(reference.data) != 0,
        "spacing": geometry.spacing if geometry is not None else tuple(float(s) for s in prediction.scale),
        "prob": run_probability(prediction, runs),
        "affine": geometry.canonical_affine if geometry is not None else None,
        "pred_name": prediction.name,
        "reference_name": reference.name,
    }


def run_probability(prediction: Labels, runs: Sequence[RunRecord]) -> np.ndarray | None:
    """The probability of the latest run whose mask layer is `prediction`, if it is one."""
    for run in reversed(runs):
        probability = run.result.probability
        if run.layers.get("mask") == prediction.name and probability.shape == np.shape(prediction.data):
            return probability
    return None
