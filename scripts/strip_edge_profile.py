"""FLAIR intensity by depth inside the brain's edge: a real skull-stripped patient beside stripped generator subjects.

The numbers of docs/generator_family_2026-12-02.md ("Probe: strippers that cut at the cortex"). Each cell
is the median / 90th percentile of the lesion-free FLAIR at that depth below the non-zero region's edge,
over the FLAIR's lesion median, in the 1.5 mm model space (the real scan resampled as `predict` does).
Only measures appearance; nothing is trained or chosen on the real patient.

Usage: python scripts/strip_edge_profile.py REAL_SUBJECT_DIR [--seeds 32000 32040]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.data.phantom.randomized import draw_training_subject, make_training_subject
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.model_space import model_space, to_model
from napari_lesionseg.errors import LesionSegError

DEPTH_BINS_MM = (0.0, 1.5, 3.0, 4.5, 6.0, 9.0, 15.0, np.inf)
SPACING = 1.5


def depth_profile(flair: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """(median, 90th percentile) of lesion-free FLAIR / lesion median, per depth bin below the brain's edge."""
    brain = ndi.binary_fill_holes(flair > 0)
    depth = ndi.distance_transform_edt(brain, sampling=SPACING)
    lesion = float(np.median(flair[mask > 0]))
    cells = []
    for low, high in zip(DEPTH_BINS_MM[:-1], DEPTH_BINS_MM[1:]):
        values = flair[brain & (depth > low) & (depth <= high) & (mask == 0)]
        cells.append((float(np.median(values)) / lesion, float(np.percentile(values, 90)) / lesion))
    return cells


def _line(name: str, cells: list[tuple[float, float]]) -> str:
    return f"| {name} | " + " | ".join(f"{m:.2f} / {p:.2f}" for m, p in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("real", help="a skull-stripped subject folder with a lesion mask")
    parser.add_argument("--seeds", type=int, nargs=2, default=(32000, 32040), help="generator seeds [first, last)")
    args = parser.parse_args()
    bins = [f"{low:g}-{high:g} mm" for low, high in zip(DEPTH_BINS_MM[:-1], DEPTH_BINS_MM[1:])]
    try:
        subject = load_subject(args.real)
    except LesionSegError as err:
        raise SystemExit(f"strip_edge_profile: {err}") from None
    if "FLAIR" not in subject.images or subject.mask is None:
        raise SystemExit(f"strip_edge_profile: {args.real}: needs a FLAIR and a lesion mask")
    flair, mask = subject.images["FLAIR"], subject.mask
    print("| subject | " + " | ".join(bins) + " |")
    print("|---" * (len(bins) + 1) + "|")
    space = model_space(flair.geometry, (SPACING,) * 3)
    lesions = to_model(mask.data.astype(np.float32), mask.geometry, space) >= 0.5
    print(_line(f"{subject.name} (real)", depth_profile(to_model(flair.data, flair.geometry, space), lesions)))
    for seed in range(*args.seeds):
        draw = draw_training_subject(seed, SPACING)
        if draw.skull != "stripped" or draw.scanner.random_contrast or draw.load_category == "very_low":
            continue
        generated = make_training_subject(seed, SPACING)
        name = f"generator {seed} ({draw.stripper}, {draw.strip_margin_mm:+.2f} mm, edge sigma {draw.strip_edge_sigma})"
        print(_line(name, depth_profile(generated.images["FLAIR"], generated.mask)))


if __name__ == "__main__":
    main()
