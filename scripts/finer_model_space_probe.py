#!/usr/bin/env python
"""Diagnostic: a checkpoint run in model spaces finer than it was trained at, scored against a subject's mask.

    PYTHONPATH=. .venv/bin/python scripts/finer_model_space_probe.py SUBJECT_DIR --checkpoint fbeta_1.5_generator \
        --spacing 1.5 1.25 1.0

Asks whether the small lesions a network misses are lost to the resampling into its model space (they
would gain probability on a finer grid) or to their contrast (they would not). The network sees its
patterns at another scale on a finer grid, so this chooses nothing: it says whether a network trained
finer is worth the GPU time. Prints, per spacing, DSC, lesion-wise TPR and FPR, and the highest
probability on every reference lesion under 100 voxels (26-connected, on the subject's grid).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from scipy import ndimage

from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.predict import loaded_checkpoint, predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.evaluation.metrics import compute_metrics

SMALL_VOXELS = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("subject")
    parser.add_argument("--checkpoint", default="fbeta_1.5_generator")
    parser.add_argument("--spacing", type=float, nargs="+", default=[1.5, 1.25, 1.0])
    args = parser.parse_args(argv)
    subject = load_subject(args.subject)
    if subject.mask is None:
        raise SystemExit(f"{args.subject}: no lesion mask to score against")
    reference = subject.mask.data > 0
    labels, count = ndimage.label(reference, np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    small = [i + 1 for i, size in enumerate(sizes) if size < SMALL_VOXELS]
    model, metadata = loaded_checkpoint(args.checkpoint)
    print(f"small lesions (voxels): {[int(sizes[i - 1]) for i in small]}")
    for spacing in args.spacing:
        finer = dataclasses.replace(metadata, spacing=[spacing] * 3)
        result = predict(subject, (model, finer), InferenceSettings())
        probability = result.probabilities[result.primary]
        metrics = compute_metrics(probability >= result.threshold, reference, spacing=subject.geometry.spacing)
        peaks = [round(float(probability[labels == i].max()), 2) for i in small]
        print(f"{spacing:g} mm: DSC {metrics['dsc']:.3f}, LTPR {metrics['ltpr']:.3f}, LFPR {metrics['lfpr']:.3f}; "
              f"small lesions' highest probability {peaks}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
