#!/usr/bin/env python
"""Two visits of one patient side by side around the later visit's largest lesion, masks outlined in green.

    PYTHONPATH=. .venv/bin/python scripts/visit_pair_picture.py FLAIR1 MASK1 FLAIR2 MASK2 OUT.png \
        --slices1 14:22 --slices2 21:29

Each MASK is `lesionseg predict`'s mask on its FLAIR's grid. The visits are not registered: the rows
show the axial slices given (counted from the feet up, chosen to cover the same anatomy), cropped
to `--half-width-mm` around the largest lesion of visit 2 in plane, at the same voxel position in
visit 1 (right for two scans of one scanner and field of view; say so where it is not). The outline
leaves the hyperintensity itself visible; Pillow (a napari dependency) writes the picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage as ndi

TILE = 200
GREEN = (40, 255, 40)


def axial(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """The volume as (Z, X, Y) in RAS (Z from the feet up) and its in-plane voxel size (mm)."""
    image = nib.as_closest_canonical(nib.load(path))
    return np.moveaxis(np.asarray(image.dataobj, dtype=np.float32), 2, 0), tuple(image.header.get_zooms()[:2])


def largest_lesion_centre(mask: np.ndarray) -> tuple[int, int]:
    """In-plane (X, Y) voxel centre of the largest 26-connected lesion."""
    labels, count = ndi.label(mask, np.ones((3, 3, 3)))
    if count == 0:
        raise SystemExit("visit 2's mask holds no lesion")
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    _, x, y = np.argwhere(labels == largest).mean(axis=0)
    return int(round(x)), int(round(y))


def tile(flair: np.ndarray, mask: np.ndarray, high: float) -> Image.Image:
    """One cropped slice in grey with the mask's border green; radiological (anterior up, right left)."""
    rgb = np.repeat((np.clip(flair / high, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    rgb[mask & ~ndi.binary_erosion(mask)] = GREEN
    return Image.fromarray(np.ascontiguousarray(np.rot90(rgb)[:, ::-1])).resize((TILE, TILE), Image.NEAREST)


def row(flair: Path, mask: Path, slices: str, centre: tuple[int, int] | None, half_width_mm: float) -> tuple[list[Image.Image], tuple[int, int]]:
    """The tiles of one visit and the in-plane centre they were cut around."""
    image, zooms = axial(flair)
    lesions = axial(mask)[0] > 0
    centre = centre or largest_lesion_centre(lesions)
    half = [int(round(half_width_mm / z)) for z in zooms]
    crop = tuple(slice(max(0, c - h), c + h) for c, h in zip(centre, half))
    high = float(np.percentile(image, 99.5))
    start, stop = (int(part) for part in slices.split(":"))
    return [tile(image[z][crop], lesions[z][crop], high) for z in range(start, stop)], centre


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("flair1", "mask1", "flair2", "mask2", "out"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--slices1", required=True, help="visit 1's axial slices START:STOP")
    parser.add_argument("--slices2", required=True, help="visit 2's axial slices START:STOP")
    parser.add_argument("--half-width-mm", type=float, default=55.0)
    args = parser.parse_args(argv)
    later, centre = row(args.flair2, args.mask2, args.slices2, None, args.half_width_mm)
    earlier, _ = row(args.flair1, args.mask1, args.slices1, centre, args.half_width_mm)
    columns = max(len(earlier), len(later))
    picture = Image.new("RGB", (TILE * columns, 2 * TILE))
    for r, tiles in enumerate((earlier, later)):
        for c, part in enumerate(tiles):
            picture.paste(part, (c * TILE, r * TILE))
    picture.quantize(colors=128).save(args.out, optimize=True)  # grey and one green: a palette keeps it small
    print(f"{args.out}: visit 1 (top) slices {args.slices1}, visit 2 (bottom) slices {args.slices2}, around voxel {centre}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
