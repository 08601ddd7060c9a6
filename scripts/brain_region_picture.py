#!/usr/bin/env python
"""What `--brain-only` removes: axial slices of a FLAIR with the lesions kept (green) and removed (red).

    PYTHONPATH=. .venv/bin/python scripts/brain_region_picture.py FLAIR ANYWHERE_MASK BRAIN_ONLY_MASK OUT.png

ANYWHERE_MASK is `lesionseg predict ... --no-brain-only`'s mask, BRAIN_ONLY_MASK the default's, both on
the FLAIR's grid. The slices shown are the ones where the two masks differ most, and the one where the
kept mask is largest, in order from the feet up; Pillow (a napari dependency) writes the picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

TILE = 256


def slices_to_show(anywhere: np.ndarray, kept: np.ndarray, count: int) -> list[int]:
    """The `count - 1` slices (axis 0) with the most removed voxels, plus the one with the most kept ones."""
    removed = (anywhere & ~kept).reshape(len(anywhere), -1).sum(axis=1)
    chosen = set(np.argsort(removed)[::-1][: count - 1].tolist())
    chosen.add(int(np.argmax(kept.reshape(len(kept), -1).sum(axis=1))))
    return sorted(chosen)


def tile(flair: np.ndarray, anywhere: np.ndarray, kept: np.ndarray, high: float) -> Image.Image:
    """One slice in grey with the removed voxels red and the kept ones green; radiological (anterior up, right left)."""
    gray = (np.clip(flair / high, 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb[anywhere & ~kept] = (255, 40, 40)
    rgb[kept] = (40, 255, 40)
    return Image.fromarray(np.ascontiguousarray(np.rot90(rgb)[:, ::-1])).resize((TILE, TILE), Image.NEAREST)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("flair", type=Path)
    parser.add_argument("anywhere", type=Path)
    parser.add_argument("brain_only", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--slices", type=int, default=6)
    args = parser.parse_args(argv)
    image = nib.as_closest_canonical(nib.load(args.flair))  # RAS: axis 2 runs from the feet up
    flair = np.moveaxis(np.asarray(image.dataobj, dtype=np.float32), 2, 0)
    masks = [np.moveaxis(np.asarray(nib.as_closest_canonical(nib.load(p)).dataobj) > 0, 2, 0) for p in (args.anywhere, args.brain_only)]
    anywhere, kept = masks
    high = float(np.percentile(flair, 99.5))
    tiles = [tile(flair[z], anywhere[z], kept[z], high) for z in slices_to_show(anywhere, kept, args.slices)]
    picture = Image.new("RGB", (TILE * len(tiles), TILE))
    for i, part in enumerate(tiles):
        picture.paste(part, (i * TILE, 0))
    picture.save(args.out, optimize=True)
    print(f"{args.out}: {len(tiles)} slices; removed {int((anywhere & ~kept).sum())} voxels, kept {int(kept.sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
