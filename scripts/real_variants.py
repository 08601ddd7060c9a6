#!/usr/bin/env python
"""The same real patient as other sites would store it: does `lesionseg predict --beta 1.5` still find its lesions?

Each variant is written as its own subject folder under --work, from the patient's files and never
over them, then segmented as a user runs it (`lesionseg predict DIR --beta 1.5`, no other flag) and
scored on the FLAIR's grid against the reference carried along the same way:

* ``as stored``: the files linked unchanged (the baseline);
* ``reoriented``: every volume stored in another voxel order (axes permuted and flipped, affine
  updated): the same world, so the same lesions;
* ``uint16``: every image stored as unsigned 16-bit integers with a scale slope and intercept, as
  raw scanner exports are;
* ``5 mm FLAIR and T2w``: the FLAIR and T2w averaged into 5 mm axial slices (a 2-D protocol), the T1w
  and T1c kept at 1 mm; the reference is the mask's share of each thick voxel, >= 0.5;
* ``T1w on a slab``: the T1w cropped to the middle 60 % of the axial slices (raw T1w scans often cover
  less of the head than the FLAIR): the slab without a T1w must not fill with false lesions;
* ``FLAIR + T2w``: no T1w or T1c.

    PYTHONPATH=. .venv/bin/python scripts/real_variants.py ../shared/real/sub-p26 --work out/variants

Cached: a variant's files and its prediction are reused when present. The rows go to --report (JSON)
and a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_lesionseg.data.naming import find_subject_files
from napari_lesionseg.evaluation.metrics import compute_metrics

REPORTED = ("dsc", "sensitivity", "ppv", "ltpr", "lfpr", "n_lesions_gt", "n_lesions_pred", "n_lesions_fp")
MASK = "label-lesion_mask"
THICK_MM = 5
SLAB_SHARE = 0.6

Variant = Callable[[dict[str, nib.Nifti1Image]], dict[str, nib.Nifti1Image]]


def reoriented(images: dict[str, nib.Nifti1Image]) -> dict[str, nib.Nifti1Image]:
    target = nib.orientations.axcodes2ornt(("P", "I", "R"))
    return {role: img.as_reoriented(nib.orientations.ornt_transform(nib.io_orientation(img.affine), target))
            for role, img in images.items()}  # fmt: skip


def uint16(images: dict[str, nib.Nifti1Image]) -> dict[str, nib.Nifti1Image]:
    out = {}
    for role, img in images.items():
        copy = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header.copy())
        if role != MASK:
            copy.set_data_dtype(np.uint16)  # nibabel picks the slope and intercept on saving
        out[role] = copy
    return out


def _thick(img: nib.Nifti1Image, axis: int, *, mask: bool) -> nib.Nifti1Image:
    data = np.asanyarray(img.dataobj).astype(np.float32)
    blocks = data.shape[axis] // THICK_MM
    data = np.take(data, np.arange(blocks * THICK_MM), axis=axis)
    shape = list(data.shape)
    shape[axis : axis + 1] = [blocks, THICK_MM]
    mean = data.reshape(shape).mean(axis=axis + 1)
    affine = img.affine.copy()
    affine[:3, 3] += affine[:3, axis] * (THICK_MM - 1) / 2  # the thick voxel's centre
    affine[:3, axis] *= THICK_MM
    return nib.Nifti1Image((mean >= 0.5).astype(np.uint8) if mask else mean, affine)


def thick_flair_t2w(images: dict[str, nib.Nifti1Image]) -> dict[str, nib.Nifti1Image]:
    axis = _axial_axis(images["FLAIR"])
    return {role: _thick(img, axis, mask=role == MASK) if role in ("FLAIR", "T2w", MASK) else img
            for role, img in images.items()}  # fmt: skip


def t1w_on_a_slab(images: dict[str, nib.Nifti1Image]) -> dict[str, nib.Nifti1Image]:
    img = images["T1w"]
    axis = _axial_axis(img)
    size = img.shape[axis]
    start, stop = int(size * (1 - SLAB_SHARE) / 2), int(size * (1 + SLAB_SHARE) / 2)
    index = [slice(None)] * 3
    index[axis] = slice(start, stop)
    return {**images, "T1w": img.slicer[tuple(index)]}


def flair_t2w(images: dict[str, nib.Nifti1Image]) -> dict[str, nib.Nifti1Image]:
    return {role: img for role, img in images.items() if role in ("FLAIR", "T2w", MASK)}


def _axial_axis(img: nib.Nifti1Image) -> int:
    return [code in "SI" for code in nib.aff2axcodes(img.affine)].index(True)


VARIANTS: dict[str, Variant | None] = {
    "as stored": None,
    "reoriented": reoriented,
    "uint16": uint16,
    "5 mm FLAIR and T2w": thick_flair_t2w,
    "T1w on a slab": t1w_on_a_slab,
    "FLAIR + T2w": flair_t2w,
}


def write_variant(subject: Path, name: str, variant: Variant | None, work: Path) -> Path:
    folder = work / name.replace(" ", "_").replace("+", "and") / subject.name
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    files = {p.name[len(subject.name) + 1 :].split(".")[0]: p for p in sorted(subject.glob(f"{subject.name}_*.nii*"))}
    if variant is None:
        for file in files.values():
            (folder / file.name).symlink_to(file.resolve())
    else:
        for role, img in variant({role: nib.load(path) for role, path in files.items()}).items():
            nib.save(img, folder / f"{subject.name}_{role}.nii.gz")
    (folder / ".complete").touch()
    return folder


def predict_and_score(folder: Path, out: Path, threads: int) -> dict:
    record = out / "record.json"
    if record.exists():
        return json.loads(record.read_text())
    out.mkdir(parents=True, exist_ok=True)
    mask, prob = out / "mask.nii.gz", out / "prob.nii.gz"
    started = time.perf_counter()
    command = [sys.executable, "-m", "napari_lesionseg.cli", "predict", str(folder), "--beta", "1.5",
               "--mask-out", str(mask), "--prob-out", str(prob), "--threads", str(threads)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{folder}: {done.stderr.strip()}")
    picked = next((line.split(": checkpoint ")[1].split()[0] for line in done.stderr.splitlines() if ": checkpoint " in line), None)
    predicted, reference = nib.load(mask), nib.load(find_subject_files(folder)[1])
    if predicted.shape != reference.shape or not np.allclose(predicted.affine, reference.affine, atol=1e-3):
        raise SystemExit(f"{folder}: the mask is not on the FLAIR's grid")
    spacing = tuple(float(z) for z in predicted.header.get_zooms()[:3])
    metrics = compute_metrics(np.asanyarray(predicted.dataobj) != 0, np.asanyarray(reference.dataobj) != 0,
                              spacing=spacing, prob=np.asanyarray(nib.load(prob).dataobj))  # fmt: skip
    row = {"checkpoint": picked, "wall_s": round(wall, 1), "grid": list(predicted.shape), "spacing_mm": spacing}
    row.update({key: metrics[key] for key in REPORTED})
    record.write_text(json.dumps(row, indent=1, default=float))
    return row


def table(rows: dict[str, dict]) -> str:
    lines = ["| variant | checkpoint | DSC | sens. | PPV | LTPR | LFPR | lesions ref/pred (false) | wall |", "|---" * 9 + "|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | `{r['checkpoint']}` | {r['dsc']:.3f} | {r['sensitivity']:.3f} | {r['ppv']:.3f} | {r['ltpr']:.3f} | "
            f"{r['lfpr']:.3f} | {r['n_lesions_gt']}/{r['n_lesions_pred']} ({r['n_lesions_fp']}) | {r['wall_s']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("subject", type=Path, help="a real subject folder with a reference mask")
    parser.add_argument("--work", type=Path, default=Path("out/variants"))
    parser.add_argument("--report", type=Path, help="JSON file for the rows (numbers and names only)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    rows = {}
    for name, variant in VARIANTS.items():
        folder = write_variant(args.subject, name, variant, args.work)
        rows[name] = predict_and_score(folder, args.work / "pred" / folder.parent.name, args.threads)
        print(f"{name}: " + ", ".join(f"{k} {rows[name][k]:.3f}" for k in REPORTED[:5]), flush=True)
    if args.report:
        machine = f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPUs"
        header = {"subject": args.subject.name, "date": time.strftime("%Y-%m-%d"), "machine": machine, "threads": args.threads}
        args.report.write_text(json.dumps({**header, "rows": rows}, indent=1, default=float) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
