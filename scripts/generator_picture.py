"""docs/generator.png: axial FLAIR (top row) and T1w (bottom row) of a real subject, the phantom and generated subjects.

Columns, left to right: the real subject (a 1 mm MNI-registered folder such as sub-p26), the phantom
(default profile), then generated training subjects (`make_training_subject`, every one at 1 mm
with FLAIR and T1w forced, the rest as drawn). Every tile shows the same world window (the real
subject's field of view) at the axial level where the real subject has most lesion voxels, and is
scaled to its own brain's 99.5th percentile. Written with a small PNG encoder (no plotting library).

    PYTHONPATH=. .venv/bin/python scripts/generator_picture.py ../shared/real/sub-p26 --out docs/generator.png
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.data.phantom import make_phantom
from napari_lesionseg.data.phantom.acquisition import brain_mask
from napari_lesionseg.data.phantom.randomized import draw_training_subject, make_training_subject

GAP = 4  # pixels between tiles


def write_png(path: Path, gray: np.ndarray) -> None:
    """Write an 8-bit greyscale PNG."""
    pixels = np.clip(np.round(gray), 0, 255).astype(np.uint8)
    height, width = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def world_slice(volume: np.ndarray, affine: np.ndarray, z_mm: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The axial plane z = `z_mm` sampled (linear) at world x `xs` (columns) and y `ys` (rows)."""
    x, y = np.meshgrid(xs, ys)
    world = np.stack([x, y, np.full_like(x, z_mm), np.ones_like(x)])
    index = np.linalg.inv(affine) @ world.reshape(4, -1)
    return ndi.map_coordinates(volume, index[:3], order=1, mode="constant", cval=0.0).reshape(x.shape)


def scaled(tile: np.ndarray, volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The tile in 0-255, 255 at the brain's 99.5th percentile."""
    top = float(np.percentile(volume[brain], 99.5)) or 1.0
    return np.clip(tile / top, 0.0, 1.0) * 255.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/generator.png"))
    parser.add_argument("--phantom-seed", type=int, default=9001)
    parser.add_argument("--seeds", default="3,6,8,13")
    args = parser.parse_args(argv)
    name = args.real.name
    real = {m: nib.load(args.real / f"{name}_{m}.nii.gz") for m in ("FLAIR", "T1w", MASK_SUFFIX)}
    affine = real["FLAIR"].affine
    data = {m: np.asarray(image.dataobj, dtype=np.float32) for m, image in real.items()}
    lesion_rows = (data[MASK_SUFFIX] > 0).sum(axis=(0, 1))
    z_mm = float((affine @ [0, 0, int(np.argmax(lesion_rows)), 1])[2])
    corners = affine @ np.array([[0, 0, 0, 1], [*(np.array(data["FLAIR"].shape) - 1), 1]]).T
    xs = np.arange(corners[0].max(), corners[0].min() - 0.5, -1.0)  # right on the left, as radiologists view
    ys = np.arange(corners[1].max(), corners[1].min() - 0.5, -1.0)  # anterior at the top
    real_brain = data["T1w"] > 0.02 * np.percentile(data["T1w"][data["T1w"] > 0], 99)
    columns = [[scaled(world_slice(data[m], affine, z_mm, xs, ys), data[m], real_brain) for m in ("FLAIR", "T1w")]]
    subjects = [make_phantom(args.phantom_seed, 1.0)]
    for seed in (int(s) for s in args.seeds.split(",")):
        subjects.append(make_training_subject(seed, 1.0, modalities=("FLAIR", "T1w")))
        print(seed, draw_training_subject(seed, 1.0, modalities=("FLAIR", "T1w")), flush=True)
    for subject in subjects:
        brain = brain_mask(subject)
        columns.append(
            [
                scaled(world_slice(subject.images[m], subject.affine, z_mm, xs, ys), subject.images[m], brain)
                for m in ("FLAIR", "T1w")
            ]
        )
    height, width = columns[0][0].shape
    canvas = np.zeros((2 * height + GAP, len(columns) * (width + GAP) - GAP))
    for c, (flair, t1w) in enumerate(columns):
        left = c * (width + GAP)
        canvas[:height, left : left + width] = flair
        canvas[height + GAP :, left : left + width] = t1w
    write_png(args.out, canvas)
    print(f"wrote {args.out} (axial z = {z_mm:g} mm)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
