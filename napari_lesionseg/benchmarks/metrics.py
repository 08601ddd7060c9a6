"""Timing of `compute_metrics` (what `lesionseg evaluate` computes) on a 1 mm whole-brain-sized case.

The case is synthetic: a few hundred random ellipsoid lesions inside an ellipsoidal "brain", a
prediction that misses some, resizes and shifts the others and adds false positives, and a
probability map that is 0 outside the brain, small noise inside it and a smooth bump over each
predicted lesion, so that ``pred = prob >= 0.5`` as in the paper (Sec. III.F).

Run it with ``python -m napari_lesionseg.benchmarks.metrics [--repeats N] [--lesions N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_lesionseg.constants import THRESHOLD
from napari_lesionseg.evaluation import lesions, metrics, surface

__all__ = ["BRAIN_SHAPE", "synthetic_case", "run_metrics_benchmark", "main"]

#: MNI152 1 mm grid, (Z, Y, X).
BRAIN_SHAPE: tuple[int, int, int] = (182, 218, 182)

_MISS_RATE = 0.15  # reference lesions the prediction misses
_FALSE_POSITIVE_RATE = 0.2  # extra predicted lesions, relative to the reference count


def synthetic_case(
    shape: tuple[int, int, int] = BRAIN_SHAPE, n_lesions: int = 300, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reference mask, a prediction and its probability map (float32) on a 1 mm grid."""
    rng = np.random.default_rng(seed)
    brain = _ellipsoid_mask(shape, np.asarray(shape) / 2.0, np.asarray(shape) * 0.42)
    prob = np.where(brain, rng.uniform(1e-4, 0.05, size=shape).astype(np.float32), np.float32(0.0))
    gt = np.zeros(shape, dtype=bool)
    inner = np.argwhere(_ellipsoid_mask(shape, np.asarray(shape) / 2.0, np.asarray(shape) * 0.33))
    for _ in range(n_lesions):
        centre = inner[rng.integers(len(inner))].astype(float)
        radii = rng.lognormal(mean=np.log(2.5), sigma=0.45, size=3).clip(0.8, 9.0)
        _paint(gt, centre, radii)
        if rng.random() >= _MISS_RATE:
            _paint_probability(prob, centre + rng.normal(0.0, 0.7, 3), radii * rng.uniform(0.7, 1.3, 3), rng)
    for _ in range(int(_FALSE_POSITIVE_RATE * n_lesions)):
        centre = inner[rng.integers(len(inner))].astype(float)
        _paint_probability(prob, centre, rng.lognormal(np.log(1.8), 0.35, 3).clip(0.8, 6.0), rng)
    return prob >= THRESHOLD, gt, prob


def run_metrics_benchmark(
    shape: tuple[int, int, int] = BRAIN_SHAPE,
    n_lesions: int = 300,
    repeats: int = 3,
    seed: int = 0,
    *,
    with_io: bool = True,
) -> dict[str, Any]:
    """Best-of-`repeats` seconds of `compute_metrics` and of each of its stages, with the case's sizes.

    With `with_io`, the case is also written as three .nii.gz files and the time to read them back
    (what `lesionseg evaluate` does before computing) is reported as ``load_nifti_s``.
    """
    pred, gt, prob = synthetic_case(shape, n_lesions, seed)
    spacing = (1.0, 1.0, 1.0)
    match = lesions.match_lesions(pred, gt)
    stages: dict[str, Callable[[], object]] = {
        "validate_inputs": lambda: (
            metrics.as_binary_mask(pred),
            metrics.as_binary_mask(gt),
            metrics.check_probability(prob),
        ),
        "voxel_counts": lambda: metrics.confusion_counts(pred, gt),
        "apr": lambda: metrics.average_precision(prob, gt),
        "lesions": lambda: lesions.match_lesions(pred, gt),
        "surface_distances": lambda: surface.surface_distance_metrics(pred, gt, spacing),
    }
    extras: dict[str, Callable[[], object]] = {
        "lesion_table": lambda: lesions.lesion_table(match, spacing=spacing, prob=prob, affine=np.eye(4)),
        "confusion_map": lambda: lesions.confusion_map(pred, gt),
        "lesion_confusion_map": lambda: lesions.lesion_confusion_map(match),
    }
    result = metrics.compute_metrics(pred, gt, spacing=spacing, prob=prob)
    compute_s = _best_time(lambda: metrics.compute_metrics(pred, gt, spacing=spacing, prob=prob), repeats)
    load_s = _load_time({"pred": pred, "gt": gt, "prob": prob}, repeats) if with_io else None
    return {
        "shape": list(shape),
        "n_voxels": int(gt.size),
        "n_lesions_gt": result["n_lesions_gt"],
        "n_lesions_pred": result["n_lesions_pred"],
        "n_nonzero_prob": int(np.count_nonzero(prob)),
        "repeats": repeats,
        "compute_metrics_s": compute_s,
        "load_nifti_s": load_s,
        "evaluate_s": compute_s + load_s if load_s is not None else None,
        "stages_s": {name: _best_time(fn, repeats) for name, fn in stages.items()},
        "not_in_compute_metrics_s": {name: _best_time(fn, repeats) for name, fn in extras.items()},
        "metrics": {key: result[key] for key in ("dsc", "apr", "ltpr", "lfpr", "assd_mm", "hd95_mm")},
    }


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark as a table, or as JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lesions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-io", dest="with_io", action="store_false", help="skip writing and reading NIfTI files")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run_metrics_benchmark(n_lesions=args.lesions, repeats=args.repeats, seed=args.seed, with_io=args.with_io)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"volume {'x'.join(map(str, report['shape']))} ({report['n_voxels']:,} voxels), "
        f"{report['n_lesions_gt']} reference / {report['n_lesions_pred']} predicted lesions, "
        f"{report['n_nonzero_prob']:,} non-zero probabilities; best of {report['repeats']}"
    )
    if report["evaluate_s"] is not None:
        print(f"  {'evaluate (load + compute)':<28}{report['evaluate_s']:8.3f} s")
        print(f"  {'load 3 NIfTI files':<28}{report['load_nifti_s']:8.3f} s")
    print(f"  {'compute_metrics (total)':<28}{report['compute_metrics_s']:8.3f} s")
    for name, seconds in {**report["stages_s"], **report["not_in_compute_metrics_s"]}.items():
        print(f"  {name:<28}{seconds:8.3f} s")
    return 0


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _load_time(arrays: dict[str, np.ndarray], repeats: int) -> float:
    """Best time to read the case back as `lesionseg evaluate` does (two masks and a probability map)."""
    import nibabel as nib

    from napari_lesionseg.data.volumes import load_volume

    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for name, data in arrays.items():
            paths[name] = Path(folder) / f"sub-01_{name}.nii.gz"
            nib.save(nib.Nifti1Image(data.astype(np.float32 if name == "prob" else np.uint8), np.eye(4)), paths[name])
        kinds = {"pred": "mask", "gt": "mask", "prob": "image"}
        return _best_time(lambda: [load_volume(paths[name], kind=kinds[name]) for name in paths], repeats)


def _ellipsoid_mask(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1


def _local_distance(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray, margin: float):
    """Normalised ellipsoid distance (1 on the surface) over the lesion's box grown by `margin` radii."""
    low = np.maximum(np.floor(centre - radii * margin), 0).astype(int)
    high = np.minimum(np.ceil(centre + radii * margin) + 1, shape).astype(int)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    grids = np.ogrid[box]
    distance = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)))
    return box, distance


def _paint(mask: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> None:
    box, distance = _local_distance(mask.shape, centre, radii, 1.0)
    mask[box] |= distance <= 1.0


def _paint_probability(prob: np.ndarray, centre: np.ndarray, radii: np.ndarray, rng: np.random.Generator) -> None:
    """A sigmoid bump that crosses 0.5 on the ellipsoid's surface, with a little noise."""
    box, distance = _local_distance(prob.shape, centre, radii, 1.6)
    bump = 1.0 / (1.0 + np.exp(-6.0 * (1.0 - distance)))
    bump = np.clip(bump + rng.normal(0.0, 0.01, bump.shape), 0.0, 1.0).astype(np.float32)
    prob[box] = np.maximum(prob[box], bump)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
