"""White-matter texture of a real subject beside the training generator's, on the model's 1.5 mm grid.

The numbers of docs/texture_sub-p26.json. Every subject is measured the same way: white matter from
`evaluation.tissue_ratios.estimate_tissues` (crude T1w k-means, lesions and 2 voxels around them left
out), then `evaluation.texture.white_matter_texture` per modality. The real subject is resampled into
model space as `predict` does; generator subjects are rendered there. Only measures appearance:
nothing is trained or chosen on the real subject.

    PYTHONPATH=. .venv/bin/python scripts/wm_texture.py ../shared/real/sub-p26 --out docs/texture_sub-p26.json

The JSON names the subject by its folder name only, never by its path.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.data.phantom.acquisition import brain_mask
from napari_lesionseg.data.phantom.randomized import make_training_subject
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.model_space import model_space, to_model
from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.evaluation.texture import white_matter_texture
from napari_lesionseg.evaluation.tissue_ratios import estimate_tissues

SPACING = 1.5
#: A skull-stripped scan's brain: T1w above this share of its 99th percentile, holes filled (as tissue_ratios.py).
REAL_BRAIN_SHARE = 0.02
GENERATOR_MODALITIES = ("FLAIR", "T1w", "T2w")


def white_matter(t1w: np.ndarray, brain: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """The crude white-matter class, lesions and two voxels around them left out."""
    return estimate_tissues(t1w, brain, lesion)["wm"] & ~ndi.binary_dilation(lesion, iterations=2)


def measure(images: dict[str, np.ndarray], wm: np.ndarray) -> dict[str, dict[str, Any]]:
    out = {}
    for modality, image in images.items():
        texture = white_matter_texture(image, wm)
        out[modality] = {
            "relative_sd": round(texture.relative_sd, 4),
            "neighbour_correlation": [round(c, 3) for c in texture.neighbour_correlation],
        }
    return out


def measure_real(folder: Path) -> dict[str, Any]:
    subject = load_subject(folder)
    if "T1w" not in subject.images or subject.mask is None:
        raise SystemExit(f"wm_texture: {folder}: needs a T1w and a lesion mask")
    space = model_space(subject.images["FLAIR"].geometry, (SPACING,) * 3)
    images = {m: to_model(v.data.astype(np.float32), v.geometry, space) for m, v in subject.images.items()}
    lesion = to_model(subject.mask.data.astype(np.float32), subject.mask.geometry, space) >= 0.5
    t1w = images["T1w"]
    brain = ndi.binary_fill_holes(t1w > REAL_BRAIN_SHARE * np.percentile(t1w[t1w > 0], 99))
    return {
        "subject": subject.name,
        "spacing_mm": SPACING,
        "textures": measure(images, white_matter(t1w, brain, lesion)),
    }


def spread(measured: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """min / median / max over subjects of the relative SD and of the mean neighbour correlation."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for modality in measured[0]:
        sds = np.array([m[modality]["relative_sd"] for m in measured])
        correlations = np.array([np.mean(m[modality]["neighbour_correlation"]) for m in measured])
        out[modality] = {
            name: {
                "min": round(float(v.min()), 4),
                "median": round(float(np.median(v)), 4),
                "max": round(float(v.max()), 4),
            }
            for name, v in (("relative_sd", sds), ("mean_neighbour_correlation", correlations))
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path, help="a skull-stripped subject folder with a T1w and a lesion mask")
    parser.add_argument("--out", type=Path, default=Path("docs/texture_sub-p26.json"))
    parser.add_argument("--generator-seeds", type=int, default=12, help="generator seeds 0..N-1")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        real = measure_real(args.real)
    except LesionSegError as err:
        raise SystemExit(f"wm_texture: {err}") from None
    print(json.dumps(real["textures"]), flush=True)
    generated = []
    for seed in range(args.generator_seeds):
        subject = make_training_subject(seed, SPACING, modalities=GENERATOR_MODALITIES, random_contrast=False)
        wm = white_matter(subject.images["T1w"], brain_mask(subject), subject.mask > 0)
        generated.append(measure(subject.images, wm))
    report = {
        "method": "evaluation.texture.white_matter_texture on the crude white matter of "
        "evaluation.tissue_ratios.estimate_tissues (lesions + 2 voxels left out), 1.5 mm model space",
        "script": "scripts/wm_texture.py",
        "real": real,
        "generator_realistic": {
            "seeds": f"0..{args.generator_seeds - 1}",
            "note": f"modalities {', '.join(GENERATOR_MODALITIES)} and realistic contrasts forced; the rest as drawn",
            "spread": spread(generated),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
