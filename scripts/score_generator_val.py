#!/usr/bin/env python
"""Score checkpoints on generator validation subjects as training validates, with small lesions counted apart.

    PYTHONPATH=. .venv/bin/python scripts/score_generator_val.py VAL_DIR [VAL_DIR ...] --checkpoint A --checkpoint B

Each subject is segmented whole at the checkpoint's training spacing (`training.validation.validate`: 50 %
overlap, spline fusion, no flips, threshold 0.5). Besides the mean metrics, every reference lesion (26-connected
component) is put in a size class and counted found when a predicted voxel touches it, so a change in how small
lesions fare shows apart from the load-weighted DSC. Prints a Markdown table; `--json` writes every row.

`--native` instead runs each subject as users do (`engine.predict`: the checkpoint's model space, brain only;
no flips unless `--tta paper`) and scores on the subject's own grid, so networks trained at different spacings
compare on one grid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.checkpoints import load_checkpoint
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.training.data import find_subject_dirs, load_training_subjects
from napari_lesionseg.training.validation import mean_metrics, predict_probability, score

#: Upper bounds (mL) of the lesion size classes.
SIZE_CLASSES_ML = (0.02, 0.05, 0.2, float("inf"))


def found_by_size(reference: np.ndarray, predicted: np.ndarray, voxel_ml: float) -> dict[str, list[int]]:
    """Per size class, [found, total] reference lesions; found: at least one predicted voxel on it."""
    labels, count = ndimage.label(reference, np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml
    hit = np.bincount(labels[predicted & (labels > 0)], minlength=count + 1)[1:] > 0
    table = {}
    low = 0.0
    for high in SIZE_CLASSES_ML:
        chosen = (sizes >= low) & (sizes < high)
        table[f"<{high:g} mL" if np.isfinite(high) else f">={low:g} mL"] = [int(hit[chosen].sum()), int(chosen.sum())]
        low = high
    return table


def native_rows(name: str, folders: list[str], tta: str) -> tuple[dict, dict]:
    """Per subject, the metrics and lesions found of the checkpoint run as `lesionseg predict` runs it."""
    checkpoint = load_checkpoint(name)
    rows, sizes = {}, {}
    for folder in folders:
        for path in find_subject_dirs(folder):
            subject = load_subject(path)
            key = f"{Path(folder).name}/{subject.name}"
            result = predict(subject, checkpoint, InferenceSettings(tta=tta, uncertainty=False, stream_partial=False))
            prob = result.probabilities[result.primary]
            reference = subject.mask.data > 0
            rows[key] = score(prob, reference, subject.geometry.spacing)
            sizes[key] = found_by_size(reference, prob >= 0.5, float(np.prod(subject.geometry.spacing)) / 1000.0)
    return rows, sizes


def score_checkpoint(name: str, folders: list[str], native: bool = False, tta: str = "none") -> dict:
    if native:
        return _summary(*native_rows(name, folders, tta))
    model, metadata = load_checkpoint(name)
    spacing = metadata.training.get("spacing")
    model_spacing = None if spacing is None else (spacing,) * 3
    rows, sizes = {}, {}
    for folder in folders:  # one at a time: folders may hold subjects of the same name
        for subject in load_training_subjects([folder], metadata.modalities, metadata.optional_modalities, model_spacing):
            key = f"{Path(folder).name}/{subject.name}"
            prob = predict_probability(
                model, subject.image, patch_size=metadata.patch_size, overlap=0.5, tta="none", device="cpu"
            )
            rows[key] = score(prob, subject.mask, subject.spacing)
            voxel_ml = float(np.prod(subject.spacing)) / 1000.0
            sizes[key] = found_by_size(np.asarray(subject.mask, bool), prob >= 0.5, voxel_ml)
    return _summary(rows, sizes)


def _summary(rows: dict, sizes: dict) -> dict:
    totals = {key: [sum(s[key][i] for s in sizes.values()) for i in (0, 1)] for key in next(iter(sizes.values()))}
    return {"mean": mean_metrics(rows.values()), "subjects": rows, "lesions_found_by_size": totals, "per_subject_sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--native", action="store_true", help="run as `lesionseg predict` does; score on each subject's grid")
    parser.add_argument("--tta", default="none", help="with --native: the flips (none, paper, mirror8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {name: score_checkpoint(name, args.folders, args.native, args.tta) for name in args.checkpoint}
    classes = list(next(iter(results.values()))["lesions_found_by_size"])
    print("| checkpoint | n | DSC | sens. | PPV | LTPR | LFPR | " + " | ".join(f"found {c}" for c in classes) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(classes))
    for name, result in results.items():
        mean = result["mean"]
        found = " | ".join(f"{a}/{b}" for a, b in result["lesions_found_by_size"].values())
        print(
            f"| `{Path(name).name.removesuffix('.pt')}` | {len(result['subjects'])} | {mean['dsc']:.3f} | {mean['sensitivity']:.3f} | "
            f"{mean['ppv']:.3f} | {mean['ltpr']:.3f} | {mean['lfpr']:.3f} | {found} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
