#!/usr/bin/env python
"""Write randomised-generator training subjects (issue 18 pilot) as subject folders.

    python scripts/pilot_generator.py OUT_DIR --n 24 --seed 20000            # training
    python scripts/pilot_generator.py OUT_DIR --n 4 --seed 21000             # validation
    python scripts/pilot_generator.py OUT_DIR --n 2 --seed 22000             # held-out test

Subject i is `make_training_subject(seed + i, spacing, modalities=MODALITIES)` written by
`write_phantom` as OUT_DIR/gen-<seed+i>/. Modalities are forced (default FLAIR,T1w), the rest
(anatomy, lesions, contrast, acquisition, skull) is the generator's own draw. Seeds 20000-22999 are
disjoint from every other seed in the project (phantom training 100-115, validation 500-503,
sample data 9001+, held-out 9401+, generator documentation 0-19).

Resumable: a subject whose folder holds all its files (mask written last) is skipped; an
interrupted one is rewritten. A line per subject says what was drawn and how long it took.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared 2-core machine: one thread (output unchanged)

from napari_lesionseg.data.phantom import write_phantom
from napari_lesionseg.data.phantom.randomized import draw_training_subject, make_training_subject


def _complete(folder: Path, name: str, modalities: list[str]) -> bool:
    files = [folder / f"{name}_{m}.nii.gz" for m in modalities] + [folder / f"{name}_label-lesion_mask.nii.gz"]
    return all(f.is_file() for f in files) and (folder / "generator.json").is_file()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, required=True, help="number of subjects")
    parser.add_argument("--seed", type=int, required=True, help="seed of the first subject")
    parser.add_argument("--spacing", type=float, default=2.0, help="isotropic voxel size, mm (default 2)")
    parser.add_argument("--modalities", default="FLAIR,T1w", help="forced modalities (default FLAIR,T1w)")
    args = parser.parse_args(argv)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        seed = args.seed + i
        name = f"gen-{seed}"
        folder = args.out_dir / name
        if _complete(folder, name, modalities):
            print(f"{name}: exists, skipped", flush=True)
            continue
        if folder.exists():
            shutil.rmtree(folder)
        start = time.perf_counter()
        subject = make_training_subject(seed, args.spacing, modalities=modalities)
        draw = draw_training_subject(seed, args.spacing, modalities=modalities)
        write_phantom(subject, args.out_dir, name)
        info = {
            "seed": seed,
            "spacing": args.spacing,
            "modalities": list(subject.images),
            "contrast": subject.contrast,
            "file_dtype": subject.file_dtype,
            "lesion_load": subject.lesion_load,
            "thick": {m: draw.slice_mm for m in draw.thick},
            "draw": repr(draw),
        }
        (folder / "generator.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
        print(
            f"{name}: {subject.contrast} contrast, load {subject.lesion_load}, "
            f"thick {sorted(draw.thick)}, {time.perf_counter() - start:.1f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
