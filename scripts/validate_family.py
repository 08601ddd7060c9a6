#!/usr/bin/env python
"""The validation table of the bundled family: held-out phantoms of our own seeds, and real patients.

    python scripts/validate_family.py OUT                      # phantoms, every bundled checkpoint
    python scripts/validate_family.py OUT --real ../shared/real --threads 2

Every prediction is the command a user runs, timed from process start to the written mask:
`lesionseg predict DIR --checkpoint NAME` for phantoms (the set says which checkpoints run), and
`lesionseg predict DIR --beta 1.5` with no other flag for the real patients. Metrics come from
`evaluation.metrics.compute_metrics` (26-connected lesions) on the FLAIR's grid. Resumable: held-out
subjects and predictions already on disk are reused; OUT/results.json holds one row per run and
OUT/table.md the means per set and checkpoint.

Held-out phantom seeds (used nowhere else): 9501-9504 (2 mm), 9511-9512 (1 mm), 9521-9522 (1 mm
T1w beside 4 mm FLAIR / T2w / PDw slices; their 4 mm FLAIR alone is the stand-in for a raw
clinical FLAIR with skull), 9531-9532 (2 mm skull-stripped), 9541-9542 (2 mm, very
low load); the generator's held-out subjects are seeds 32000-32007 (scripts/train_bundled.sh).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: name: (`lesionseg sample` options, inputs kept (None: all), run every checkpoint or only beta 1.5).
PHANTOM_SETS: dict[str, tuple[list[str], list[str] | None, bool]] = {
    "2 mm, four inputs": (["--n", "4", "--seed", "9501", "--spacing", "2"], None, True),
    "2 mm, FLAIR + T1w": (["--n", "4", "--seed", "9501", "--spacing", "2"], ["FLAIR", "T1w"], False),
    "2 mm, FLAIR alone": (["--n", "4", "--seed", "9501", "--spacing", "2"], ["FLAIR"], False),
    "1 mm, four inputs": (["--n", "2", "--seed", "9511", "--spacing", "1"], None, False),
    "4 mm slices, 1 mm T1w": (
        ["--n", "2", "--seed", "9521", "--spacing", "1", "--slice-thickness", "4", "--thick", "FLAIR,T2w,PDw"], None, False,
    ),
    "4 mm slices, FLAIR alone": (
        ["--n", "2", "--seed", "9521", "--spacing", "1", "--slice-thickness", "4", "--thick", "FLAIR,T2w,PDw"], ["FLAIR"], False,
    ),
    "2 mm, skull-stripped": (["--n", "2", "--seed", "9531", "--spacing", "2", "--skull-strip"], None, False),
    "2 mm, very low load": (["--n", "2", "--seed", "9541", "--spacing", "2", "--load", "very_low"], None, False),
}
KEYS = ("dsc", "sensitivity", "ppv", "f2", "apr", "ltpr", "lfpr")


def lesionseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_lesionseg.cli", *args], capture_output=True, text=True)


def held_out_sets(out: Path, generator: Path | None) -> dict[str, list[Path]]:
    """Subject folders per set (written once; a set with fewer inputs links the files it keeps)."""
    sets = {}
    for name, (options, keep, _) in PHANTOM_SETS.items():
        source = out / "data" / "_".join(o.lstrip("-").replace(",", "-") for o in options)
        if not (source / ".complete").exists():
            done = lesionseg("sample", str(source), *options, "--overwrite")
            if done.returncode:
                raise SystemExit(done.stderr)
            (source / ".complete").touch()
        subjects = sorted(p for p in source.iterdir() if p.is_dir())
        kept = source.parent / f"{source.name}-{'-'.join(keep or [])}"  # one folder per source: names repeat across sets
        sets[name] = subjects if keep is None else [_subset(s, keep, kept) for s in subjects]
    if generator is not None:
        sets["generator, held out"] = sorted(p for p in generator.iterdir() if p.is_dir())
    return sets


def _subset(subject: Path, keep: list[str], root: Path) -> Path:
    folder = root / subject.name
    folder.mkdir(parents=True, exist_ok=True)
    for file in subject.iterdir():
        role = file.name[len(subject.name) + 1 :].split(".")[0]
        if role in keep or role == "label-lesion_mask":
            link = folder / file.name
            if not link.exists():
                link.symlink_to(file.resolve())
    return folder


def run(subject: Path, selector: list[str], pred_dir: Path, threads: int) -> dict:
    """One `lesionseg predict`, timed, then scored against the subject's mask when it has one."""
    from napari_lesionseg.data.naming import find_subject_files

    pred_dir.mkdir(parents=True, exist_ok=True)
    mask, prob = pred_dir / f"{subject.name}_mask.nii.gz", pred_dir / f"{subject.name}_prob.nii.gz"
    record = pred_dir / f"{subject.name}.json"
    if record.exists():
        return json.loads(record.read_text())
    started = time.perf_counter()
    done = lesionseg("predict", str(subject), *selector, "--mask-out", str(mask), "--prob-out", str(prob), "--threads", str(threads))
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{subject}: {done.stderr.strip()}")
    row = {"subject": subject.name, "wall_s": round(wall, 1), "log": done.stderr.strip().splitlines()[-3:]}
    row["checkpoint"] = next((line.split(": checkpoint ")[1].split()[0] for line in done.stderr.splitlines() if ": checkpoint " in line), None)
    reference = find_subject_files(subject)[1]
    row.update(_score(mask, prob, reference))
    record.write_text(json.dumps(row, indent=1))
    return row


def _score(mask: Path, prob: Path, reference: Path | None) -> dict:
    from napari_lesionseg.data.volumes import load_volume
    from napari_lesionseg.evaluation.lesions import label_lesions
    from napari_lesionseg.evaluation.metrics import compute_metrics

    predicted = load_volume(mask, kind="mask")
    spacing = predicted.geometry.spacing
    if reference is None:
        count = int(label_lesions(predicted.data != 0)[1])
        return {"volume_pred_ml": float((predicted.data != 0).sum() * np.prod(spacing) / 1000), "n_lesions_pred": count}
    gt = load_volume(reference, kind="mask")
    metrics = compute_metrics(predicted.data != 0, gt.data != 0, spacing=spacing, prob=load_volume(prob).data)
    return {k: metrics[k] for k in (*KEYS, "n_lesions_gt", "n_lesions_pred", "n_lesions_fp", "volume_gt_ml", "volume_pred_ml")}


def real_runs(real: Path, out: Path) -> list[tuple[str, Path]]:
    """The real patients as a user has them, and sub-p26's FLAIR alone (linked, never copied or changed)."""
    runs = [(f"real: {p.name}", p) for p in sorted(real.glob("sub-*")) if p.is_dir()]
    runs += [(f"real raw: {p.name}", p) for p in sorted((real / "raw-long").glob("sub-*")) if p.is_dir()]
    for name, folder in list(runs[:1]):
        runs.append((f"{name}, FLAIR alone", _subset(folder, ["FLAIR"], out / "data" / "real-flair")))
    return runs


def _label(checkpoint: str) -> str:
    """A checkpoint's name for the table and its prediction folder: a file's stem, a name as given (fbeta_1.5, not fbeta_1)."""
    return Path(checkpoint).stem if checkpoint.endswith(".pt") else checkpoint


def table(rows: list[dict]) -> str:
    lines = ["| set | checkpoint | n | " + " | ".join(k.upper() if len(k) < 5 else k for k in KEYS) + " | lesions ref/pred (false) | mL ref/pred | wall per subject |"]
    lines.append("|---" * (len(KEYS) + 6) + "|")
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["set"], row["checkpoint"] or "?"), []).append(row)
    for (name, checkpoint), group in groups.items():
        cells = []
        for key in KEYS:
            values = [r[key] for r in group if r.get(key) is not None]
            cells.append(f"{np.mean(values):.3f}" if values else "")
        counts = (
            f"{sum(r['n_lesions_gt'] for r in group)}/{sum(r['n_lesions_pred'] for r in group)} ({sum(r['n_lesions_fp'] for r in group)})"
            if "n_lesions_gt" in group[0] else f"-/{sum(r['n_lesions_pred'] for r in group)}"
        )
        volumes = (
            f"{sum(r['volume_gt_ml'] for r in group):.1f}/{sum(r['volume_pred_ml'] for r in group):.1f}"
            if "volume_gt_ml" in group[0] else "-/" + ", ".join(f"{r['volume_pred_ml']:.1f}" for r in group)
        )
        wall = np.mean([r["wall_s"] for r in group])
        lines.append(f"| {name} | `{checkpoint}` | {len(group)} | " + " | ".join(cells) + f" | {counts} | {volumes} | {wall:.0f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoint", action="append", default=[], help="default: fbeta_1.5, fbeta_1.0, fbeta_3.0, focal")
    parser.add_argument("--generator", type=Path, help="held-out generator subjects (folders with masks)")
    parser.add_argument("--real", type=Path, help="real patients: sub-*/ with masks, raw-long/sub-*/ without")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", action="append", default=[], help="run only these sets (repeatable)")
    parser.add_argument("--by-beta", action="store_true", help="phantoms too as `--beta 1.5` picks (e.g. for an older family)")
    parser.add_argument(
        "--predict-option", action="append", default=[], metavar="OPTION",
        help="one more `lesionseg predict` option for every run, e.g. --predict-option=--no-brain-only (kept apart in OUT/pred)",
    )
    args = parser.parse_args(argv)
    checkpoints = args.checkpoint or ["fbeta_1.5", "fbeta_1.0", "fbeta_3.0", "focal"]
    rows = []
    by_beta = (["--beta", "1.5"], "beta-1.5")
    runs = [
        (name, subject, *(by_beta if args.by_beta else (["--checkpoint", c], _label(c))))
        for name, subjects in held_out_sets(args.out, args.generator).items()
        for c in (checkpoints if PHANTOM_SETS.get(name, (0, 0, False))[2] and not args.by_beta else checkpoints[:1])
        for subject in subjects
    ]
    if args.real is not None:
        runs += [(name, folder, *by_beta) for name, folder in real_runs(args.real, args.out)]
    for name, subject, selector, label in runs:
        if args.only and name not in args.only:
            continue
        variant = "".join(args.predict_option).replace("-", "_")
        pred_dir = args.out / "pred" / name.replace(" ", "_").replace(",", "").replace(":", "") / (label + variant)
        row = {"set": name, **run(subject, [*selector, *args.predict_option], pred_dir, args.threads)}
        row["checkpoint"] = row.get("checkpoint") if label == "beta-1.5" else label
        rows.append(row)
        print(f"{name} / {row['checkpoint']} / {subject.name}: " + ", ".join(f"{k} {row[k]:.3f}" for k in KEYS if row.get(k) is not None)
              + f" ({row['wall_s']} s)", flush=True)  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    (args.out / "table.md").write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
