#!/usr/bin/env python
"""Which reference lesions a prediction finds, by size: volume, FLAIR contrast, highest probability, share found.

    PYTHONPATH=. .venv/bin/python scripts/missed_lesions.py SUBJECT_DIR PRED_MASK PRED_PROB

Reference lesions are the 26-connected components of the subject's mask; a lesion's FLAIR contrast
is its mean FLAIR over the mean of a shell 1-3 voxels outside it (other lesions left out). All on
the FLAIR's grid (the prediction must be on it, as `lesionseg predict` writes it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_lesionseg.data.naming import find_subject_files


def lesion_rows(reference: np.ndarray, predicted: np.ndarray, prob: np.ndarray, flair: np.ndarray, voxel_ml: float) -> list[dict]:
    labels, count = ndimage.label(reference, np.ones((3, 3, 3), bool))
    rows = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(slice(max(0, s.start - 4), s.stop + 4) for s in box)
        lesion = labels[grown] == index
        shell = ndimage.binary_dilation(lesion, iterations=3) & ~ndimage.binary_dilation(lesion) & ~reference[grown]
        rows.append({
            "volume_ml": float(lesion.sum() * voxel_ml),
            "contrast": float(flair[grown][lesion].mean() / flair[grown][shell].mean()),
            "max_prob": float(prob[grown][lesion].max()),
            "found": float(predicted[grown][lesion].mean()),
        })  # fmt: skip
    return sorted(rows, key=lambda row: row["volume_ml"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("subject", type=Path)
    parser.add_argument("mask", type=Path)
    parser.add_argument("prob", type=Path)
    args = parser.parse_args(argv)
    images, reference_file = find_subject_files(args.subject)
    reference = nib.load(reference_file)
    flair = np.asanyarray(nib.load(images["FLAIR"]).dataobj).astype(np.float32)
    predicted, prob = (np.asanyarray(nib.load(f).dataobj) for f in (args.mask, args.prob))
    voxel_ml = float(np.prod(reference.header.get_zooms()[:3])) / 1000
    print("| lesion mL | FLAIR lesion / surroundings | highest probability | share of its voxels found |")
    print("|---:|---:|---:|---:|")
    for row in lesion_rows(np.asanyarray(reference.dataobj) != 0, predicted != 0, prob, flair, voxel_ml):
        print(f"| {row['volume_ml']:.3f} | {row['contrast']:.2f} | {row['max_prob']:.2f} | {row['found']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
