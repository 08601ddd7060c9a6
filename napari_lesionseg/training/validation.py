"""Validation on held-out subjects: whole-volume inference (the path users run) and `compute_metrics`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from napari_lesionseg.constants import OVERLAP, THRESHOLD
from napari_lesionseg.training.data import TrainingSubject

__all__ = ["SUMMARY_KEYS", "mean_metrics", "predict_probability", "score", "validate"]

#: Metrics kept per subject and averaged over subjects (the docs' validation table).
SUMMARY_KEYS = (
    "dsc", "sensitivity", "ppv", "specificity", "f2", "apr", "ltpr", "lfpr",
    "jaccard", "vd_abs", "assd_mm", "hd95_mm",
)  # fmt: skip


def validate(
    model: torch.nn.Module,
    subjects: Sequence[TrainingSubject],
    *,
    patch_size: Sequence[int],
    overlap: float = OVERLAP,
    tta: str = "paper",
    device: torch.device | str = "cpu",
    precision: str = "auto",
    batch_size: int = 2,
) -> dict[str, Any]:
    """Segment every subject's whole volume and score it against its mask.

    Returns:
        ``{"mean": {metric: mean over subjects}, "subjects": {name: {metric: value}},
        "settings": {...}}``; a metric that is undefined for a subject (``None``) is left out of
        its mean.
    """
    per_subject = {}
    for subject in subjects:
        prob = predict_probability(
            model, subject.image, patch_size=patch_size, overlap=overlap, tta=tta, device=device,
            precision=precision, batch_size=batch_size,
        )
        per_subject[subject.name] = score(prob, subject.mask, subject.spacing)
    return {
        "mean": mean_metrics(per_subject.values()),
        "subjects": per_subject,
        "settings": {
            "patch_size": list(patch_size), "overlap": overlap, "tta": tta, "fusion": "spline", "threshold": THRESHOLD,
        },
    }


def predict_probability(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    patch_size: Sequence[int],
    overlap: float,
    tta: str,
    device: torch.device | str,
    precision: str = "auto",
    batch_size: int = 2,
) -> np.ndarray:
    """Lesion probability (Z, Y, X) of a normalised stack, by the inference engine with spline fusion."""
    from napari_lesionseg.engine.run import run_inference
    from napari_lesionseg.engine.settings import InferenceSettings

    settings = InferenceSettings(
        patch_size=tuple(patch_size), overlap=overlap, fusion=("spline",), tta=tta, device=str(device),
        precision=precision, batch_size=batch_size, uncertainty=False, stream_partial=False,
    )
    return np.asarray(run_inference(model, image, settings).probabilities["spline"], dtype=np.float32)


def mean_metrics(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Mean of every `SUMMARY_KEYS` metric over the rows that define it."""
    rows = list(rows)
    means = {}
    for key in SUMMARY_KEYS:
        values = [row[key] for row in rows if row.get(key) is not None]
        if values:
            means[key] = float(np.mean(values))
    return means


def score(prob: np.ndarray, mask: np.ndarray, spacing: Sequence[float]) -> dict[str, Any]:
    """The `SUMMARY_KEYS` metrics of a probability map (thresholded at 0.5) against a reference mask."""
    from napari_lesionseg.evaluation.metrics import compute_metrics

    metrics = compute_metrics(prob >= THRESHOLD, np.asarray(mask, dtype=bool), spacing=spacing, prob=prob)
    return {key: metrics[key] for key in SUMMARY_KEYS}
