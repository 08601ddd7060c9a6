"""Tissue-to-white-matter ratios of a real subject, of the phantom and of the training generator, side by side.

Every subject is measured the same way: `evaluation.tissue_ratios.estimate_tissues` (a crude 3-class
k-means on the T1w inside the brain, lesion voxels left out) and then `tissue_ratios` (median of
lesion, grey matter and CSF over white matter's, per modality). For the phantom the ratios on its
own tissue labels are given too, to show what the crude estimate does.

    PYTHONPATH=. .venv/bin/python scripts/tissue_ratios.py ../shared/real/sub-p26 \\
        --out docs/tissue_ratios_sub-p26.json

The JSON names the subject by its folder name only, never by its path.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.constants import MASK_SUFFIX, MODALITIES
from napari_lesionseg.data.phantom import make_phantom
from napari_lesionseg.data.phantom.acquisition import brain_mask
from napari_lesionseg.data.phantom.randomized import make_training_subject
from napari_lesionseg.data.phantom.subject import Phantom
from napari_lesionseg.evaluation.tissue_ratios import RATIO_TISSUES, estimate_tissues, tissue_ratios

#: A skull-stripped scan's brain: T1w above this share of its 99th percentile, holes filled.
REAL_BRAIN_SHARE = 0.02


def measure_real(folder: Path) -> dict[str, Any]:
    """Ratios of a skull-stripped subject folder with a T1w and a lesion mask, all on one grid."""
    name = folder.name
    images = {}
    for modality in MODALITIES:
        path = folder / f"{name}_{modality}.nii.gz"
        if path.is_file():
            images[modality] = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    lesion = np.asarray(nib.load(folder / f"{name}_{MASK_SUFFIX}.nii.gz").dataobj) > 0
    t1w = images["T1w"]
    brain = ndi.binary_fill_holes(t1w > REAL_BRAIN_SHARE * np.percentile(t1w[t1w > 0], 99))
    tissues = estimate_tissues(t1w, brain, lesion)
    return {
        "subject": name,
        "brain_mask": f"T1w > {REAL_BRAIN_SHARE:g} x its 99th percentile (of the positive voxels), holes filled",
        "voxels_mm3": {k: int(v.sum()) for k, v in tissues.items()},
        "ratios": _rounded(tissue_ratios(images, tissues)),
    }


def measure_phantom(subject: Phantom) -> dict[str, dict[str, dict[str, float]]]:
    """Ratios of a phantom or generated subject: crude estimate (as for real scans) and its own labels."""
    lesion = subject.mask > 0
    crude = estimate_tissues(subject.images["T1w"], brain_mask(subject), lesion)
    labels = {
        "wm": (subject.tissues["wm"] >= 0.9) & ~lesion,
        "gm": subject.tissues["gm"] >= 0.7,
        "csf": subject.tissues["csf"] >= 0.9,
        "lesion": lesion,
    }
    return {"crude": tissue_ratios(subject.images, crude), "labels": tissue_ratios(subject.images, labels)}


def spread(measured: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """min / median / max of each ratio over subjects (NaNs, e.g. no lesion voxels, left out)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for modality in measured[0]:
        out[modality] = {}
        for tissue in RATIO_TISSUES:
            values = np.array([m[modality][tissue] for m in measured if modality in m], dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                out[modality][tissue] = {
                    "min": round(float(values.min()), 4),
                    "median": round(float(np.median(values)), 4),
                    "max": round(float(values.max()), 4),
                    "n": int(values.size),
                }
    return out


def _rounded(ratios: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {m: {t: round(float(v), 4) for t, v in r.items()} for m, r in ratios.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path, help="a skull-stripped subject folder with T1w and lesion mask")
    parser.add_argument("--out", type=Path, default=Path("docs/tissue_ratios_sub-p26.json"))
    parser.add_argument("--phantom-seeds", default="9001,9002,9003", help="phantom seeds (default profile)")
    parser.add_argument("--phantom-spacing", type=float, default=1.0)
    parser.add_argument("--generator-seeds", type=int, default=20, help="generator seeds 0..N-1")
    parser.add_argument("--generator-spacing", type=float, default=1.5)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "method": "evaluation.tissue_ratios: estimate_tissues (3-class k-means on T1w inside the brain, lesion "
        "voxels left out) then tissue_ratios (median of lesion / grey matter / CSF over white matter's)",
        "script": "scripts/tissue_ratios.py",
        "real": measure_real(args.real),
    }
    print(json.dumps(report["real"]["ratios"]), flush=True)
    seeds = [int(s) for s in args.phantom_seeds.split(",") if s]
    phantoms = [measure_phantom(make_phantom(s, args.phantom_spacing)) for s in seeds]
    report["phantom_default"] = {
        "seeds": seeds,
        "spacing_mm": args.phantom_spacing,
        "crude": spread([p["crude"] for p in phantoms]),
        "labels": spread([p["labels"] for p in phantoms]),
    }
    generated = []
    times = []
    for seed in range(args.generator_seeds):
        tick = time.perf_counter()
        subject = make_training_subject(seed, args.generator_spacing, modalities=MODALITIES, random_contrast=False)
        times.append(time.perf_counter() - tick)
        generated.append(measure_phantom(subject))
    report["generator_realistic"] = {
        "seeds": f"0..{args.generator_seeds - 1}",
        "spacing_mm": args.generator_spacing,
        "note": "every modality and realistic contrasts forced (random_contrast=False); the other draws as drawn",
        "seconds_per_subject": round(float(np.median(times)), 2) if times else None,
        "crude": spread([g["crude"] for g in generated]) if generated else {},
        "labels": spread([g["labels"] for g in generated]) if generated else {},
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
