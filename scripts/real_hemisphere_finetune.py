"""The retrain loop on a real patient, one hemisphere at a time (issue 18, part 4).

The subject (a real 1 mm patient, e.g. ``sub-p26``) is cropped to one hemisphere with a margin
(world x > -10 mm, then x < +10 mm), and each crop is written as its own subject folder with its
reference mask. `lesionseg finetune` runs on a crop with that mask as the correction (the dock's
defaults) from the checkpoint `lesionseg predict --beta 1.5` picks for the subject; then `lesionseg
predict` segments the WHOLE patient with the starting and the fine-tuned checkpoint, and only the
other hemisphere beyond the margin band (x < -10 mm, resp. x > +10 mm), never trained on, is scored.
Held-out 2 mm phantoms (`lesionseg sample --seed 9301`, seeds used nowhere else) check that the
fine-tune costs at most `PHANTOM_TOLERANCE` of mean DSC there.

Every step calls the CLI as a user would. Results are cached under --work (crops, checkpoints,
masks, phantoms, fine-tune records), so a rerun only rescores. The report (numbers, file names only)
goes to --report; a Markdown table is printed.

    PYTHONPATH=. .venv/bin/python scripts/real_hemisphere_finetune.py --subject ../shared/real/sub-p26
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from napari_lesionseg.data.naming import find_subject_files
from napari_lesionseg.evaluation.metrics import compute_metrics

#: Half-width of the band around the midline (world x = 0) that is neither scored nor left out of a crop.
MARGIN_MM = 10.0
#: The largest drop of held-out phantom mean DSC the fine-tune may cost.
PHANTOM_TOLERANCE = 0.02
#: Seeds of the held-out 2 mm phantoms (`lesionseg sample --n 3 --seed 9301 --spacing 2`): used nowhere else.
PHANTOM_SEEDS = (9301, 9302, 9303)
#: The metrics reported for the scored hemisphere (keys of `compute_metrics`).
REPORTED = ("dsc", "sensitivity", "ppv", "ltpr", "lfpr", "n_lesions_gt", "n_lesions_pred", "n_lesions_fp")


@dataclass(frozen=True)
class Half:
    """One direction: train on the crop on the `side` of the midline (with the margin), score the other side.

    Attributes:
        side: "right" (world x > 0) or "left" (world x < 0), the hemisphere trained on.
        sign: +1 for right, -1 for left: the trained half is sign * x > -MARGIN_MM.
    """

    side: str
    sign: int

    @property
    def suffix(self) -> str:
        """What the crop's subject name gets appended (``sub-p26`` -> ``sub-p26R``)."""
        return self.side[0].upper()

    @property
    def trained_text(self) -> str:
        """The trained half in words (``world x > -10 mm``)."""
        return f"world x {'>' if self.sign > 0 else '<'} {-self.sign * MARGIN_MM:+g} mm"

    @property
    def scored_text(self) -> str:
        """The scored half in words (``world x < -10 mm``)."""
        return f"world x {'<' if self.sign > 0 else '>'} {-self.sign * MARGIN_MM:+g} mm"

    def trained(self, x: np.ndarray) -> np.ndarray:
        """Which world x positions the crop keeps."""
        return self.sign * x > -MARGIN_MM

    def scored(self, x: np.ndarray) -> np.ndarray:
        """Which world x positions are scored: the other hemisphere beyond the margin band."""
        return self.sign * x < -MARGIN_MM


HALVES = (Half("right", 1), Half("left", -1))


def main() -> None:
    args = _arguments()
    subject = Path(args.subject)
    work = Path(args.work)
    os.environ["LESIONSEG_HOME"] = str((work / "home").resolve())  # never the user's own checkpoints or corrections
    name = _subject_name(subject)
    start = args.checkpoint or _checkpoint_for(subject)
    report: dict[str, Any] = {
        "subject": name, "checkpoint": start, "margin_mm": MARGIN_MM, "threads": args.threads,
        "finetune_options": list(args.finetune_option),
        "machine": _machine(), "halves": {},
    }  # fmt: skip
    start_mask = _predict(subject, start, start, work, args.threads)
    phantoms = _phantoms(work)
    phantom_scores = {"before": _phantom_scores(phantoms, start, start, work, args.threads)}
    tuned_masks: list[Path] = []
    for half in HALVES:
        crop = _write_crop(subject, work / "crops" / f"{name}{half.suffix}", half)
        tuned = work / "checkpoints" / f"{name}{half.suffix}.pt"
        fine_tune = _fine_tune(crop, start, tuned, args.threads, args.finetune_option)
        tuned_mask = _predict(subject, str(tuned), tuned.stem, work, args.threads)
        tuned_masks.append(tuned_mask)
        report["halves"][half.side] = {
            "crop": _crop_record(crop, subject, half),
            "fine_tune": fine_tune,
            "trained": half.trained_text,
            "scored": half.scored_text,
            "before": _score(start_mask, subject, half),
            "after": _score(tuned_mask, subject, half),
        }  # fmt: skip
        phantom_scores[half.side] = _phantom_scores(phantoms, str(tuned), tuned.stem, work, args.threads)
    report["phantoms"] = _phantom_summary(phantom_scores)
    report["whole_patient_predict"] = {mask.parent.name: _timing(mask) for mask in (start_mask, *tuned_masks)}
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    print(_table(report))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--subject", required=True, help="the real patient's subject folder (1 mm, with its lesion mask)"
    )
    parser.add_argument("--work", default="out/hemisphere", help="cache folder (crops, checkpoints, masks, phantoms)")
    parser.add_argument(
        "--checkpoint", help="the starting checkpoint (default: the one `lesionseg predict --beta 1.5` picks)"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of every command (default: %(default)s)")
    parser.add_argument("--report", default="docs/real/hemisphere_finetune_sub-p26.json", help="the JSON report")
    parser.add_argument(
        "--finetune-option", action="append", default=[], metavar="OPTION",
        help="an option passed on to `lesionseg finetune`, e.g. --finetune-option=--rehearse=2 (use another --work)",
    )  # fmt: skip
    return parser.parse_args()


# --- Subjects and crops ------------------------------------------------------------------------------


def _subject_name(folder: Path) -> str:
    """The subject's file prefix (``sub-p26`` for ``sub-p26_FLAIR.nii.gz``)."""
    images, _ = find_subject_files(folder)
    return images["FLAIR"].name.split("_")[0]


def _checkpoint_for(subject: Path) -> str:
    """The name of the checkpoint `lesionseg predict --beta 1.5` picks for the subject's modalities."""
    from napari_lesionseg.constants import BEST_BETA
    from napari_lesionseg.engine.catalog import pick_by_beta
    from napari_lesionseg.engine.checkpoints import list_checkpoints

    images, _ = find_subject_files(subject)  # under main's LESIONSEG_HOME: a user's beta-1.5 fine-tune would win
    return pick_by_beta(list_checkpoints(), BEST_BETA, tuple(images)).name


def _world_x(image: nib.Nifti1Image) -> tuple[int, np.ndarray]:
    """The voxel axis along which world x changes, and the world x of each index along it.

    Raises:
        ValueError: the grid is oblique in x (more than one voxel axis moves world x).
    """
    row = np.asarray(image.affine)[0, :3]
    moving = np.flatnonzero(np.abs(row) > 1e-6 * np.abs(row).max())
    if len(moving) != 1:
        raise ValueError(f"world x follows voxel axes {moving.tolist()}; only an axis-aligned grid can be cut at x")
    axis = int(moving[0])
    return axis, image.affine[0, 3] + row[axis] * np.arange(image.shape[axis])


def _index_slice(keep: np.ndarray) -> slice:
    """The contiguous index range where `keep` holds (a half-space of a line is one range)."""
    index = np.flatnonzero(keep)
    return slice(int(index.min()), int(index.max()) + 1)


def _crop_slices(image: nib.Nifti1Image, keep: Any) -> tuple[slice, ...]:
    """The slices that keep the voxels whose world x satisfies `keep`."""
    axis, x = _world_x(image)
    slices = [slice(None)] * 3
    slices[axis] = _index_slice(keep(x))
    return tuple(slices)


def _write_crop(subject: Path, crop: Path, half: Half) -> Path:
    """Write every modality and the mask of `subject` cropped to the trained half, named after the crop folder."""
    if crop.is_dir():
        return crop
    name, partial = _subject_name(subject), crop.with_name(crop.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    images, mask = find_subject_files(subject)
    for path in [*images.values(), mask]:
        image = nib.load(str(path))
        cropped = image.slicer[_crop_slices(image, half.trained)]  # nibabel moves the affine's origin
        cropped.set_qform(cropped.affine, int(image.header["qform_code"]))  # the source's codes, not nibabel's
        cropped.set_sform(cropped.affine, int(image.header["sform_code"]))
        nib.save(cropped, str(partial / path.name.replace(name, crop.name, 1)))
    partial.rename(crop)
    return crop


def _crop_record(crop: Path, subject: Path, half: Half) -> dict[str, Any]:
    """The crop's shape, kept world x range and lesion voxels, and the scored half's lesion voxels."""
    _, crop_mask = find_subject_files(crop)
    _, mask = find_subject_files(subject)
    cropped, whole = nib.load(str(crop_mask)), nib.load(str(mask))
    _, x = _world_x(cropped)
    return {
        "folder": crop.name, "shape": list(cropped.shape), "world_x_mm": [float(x.min()), float(x.max())],
        "lesion_voxels_trained": int(np.count_nonzero(np.asanyarray(cropped.dataobj))),
        "lesion_voxels_scored": int(np.count_nonzero(_scored_part(whole, half))),
    }  # fmt: skip


def _scored_part(image: nib.Nifti1Image, half: Half) -> np.ndarray:
    """The voxels of `image` (on the whole patient's grid) in the half that `half` scores."""
    return np.asanyarray(image.dataobj)[_crop_slices(image, half.scored)]


# --- The CLI, timed ---------------------------------------------------------------------------------------


def _lesionseg(arguments: list[str], threads: int, log: Path) -> dict[str, Any]:
    """Run ``lesionseg ARGUMENTS`` (one torch thread count), logging its output; its wall time and the load.

    Raises:
        RuntimeError: the command failed (the log's tail is in the message).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before, loads = os.getloadavg()[0], []
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "napari_lesionseg.cli", *arguments], stdout=out,
                                   stderr=subprocess.STDOUT, env=env)  # fmt: skip
        while not _finished(process, 5.0):
            loads.append(os.getloadavg()[0])
    wall = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"lesionseg {' '.join(arguments)} failed:\n{log.read_text()[-2000:]}")
    return {"wall_s": round(wall, 1), "load_before": load_before, "load_during_mean": round(float(np.mean(loads or [load_before])), 2),
            "load_during_max": max(loads or [load_before]), "load_after": os.getloadavg()[0]}  # fmt: skip


def _finished(process: subprocess.Popen, seconds: float) -> bool:
    """Wait up to `seconds` for the process; whether it has ended (so the wall time is exact, not polled)."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _fine_tune(crop: Path, start: str, out: Path, threads: int, options: list[str]) -> dict[str, Any]:
    """`lesionseg finetune` on the crop with its mask as the correction (the dock's defaults); cached with its record."""
    record_path = out.with_suffix(".json")
    if record_path.exists() and out.exists():
        return json.loads(record_path.read_text())
    _, mask = find_subject_files(crop)
    out.unlink(missing_ok=True)  # an interrupted run's checkpoint: never overwritten, so start again
    timing = _lesionseg(["finetune", str(crop), "--corrected", str(mask), "--checkpoint", start, "--out", str(out),
                         "--threads", str(threads), *options], threads, out.with_suffix(".log"))  # fmt: skip
    record = {**timing, **_fine_tune_metadata(out)}
    record_path.write_text(json.dumps(record, indent=1))
    return record


def _fine_tune_metadata(checkpoint: Path) -> dict[str, Any]:
    """What the fine-tuned checkpoint records about its run: steps, kept step, why it stopped, crop scores."""
    from napari_lesionseg.engine.checkpoints import read_metadata

    training = read_metadata(checkpoint).training
    fine_tune = training["fine_tune"]
    return {
        "steps": training.get("steps"), "best_step": fine_tune["best_step"], "stopped": fine_tune["stopped"],
        "skipped_steps": fine_tune["skipped_steps"], "engine_elapsed_s": fine_tune["elapsed_s"],
        "threads": fine_tune["threads"], "settings": fine_tune["settings"], "held_out": fine_tune["held_out"],
        "crop_before": _kept(fine_tune["metrics_before"]), "crop_after": _kept(fine_tune["metrics_after"]),
    }  # fmt: skip


def _kept(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reported metrics of a metrics dict that has them."""
    return None if metrics is None else {key: metrics[key] for key in REPORTED if key in metrics}


def _predict(subject: Path, checkpoint: str, label: str, work: Path, threads: int) -> Path:
    """The mask `lesionseg predict SUBJECT --checkpoint CHECKPOINT` writes (its defaults), cached under `label`."""
    mask = work / "predictions" / label / f"{subject.name}_mask.nii.gz"
    if not mask.exists():
        timing = _lesionseg(["predict", str(subject), "--checkpoint", checkpoint, "--mask-out", str(mask)],
                            threads, mask.with_name(f"{subject.name}.log"))  # fmt: skip
        mask.with_name(f"{subject.name}_timing.json").write_text(json.dumps(timing))
    return mask


def _timing(mask: Path) -> dict[str, Any]:
    """The wall time and load of the `lesionseg predict` that wrote `mask`."""
    return json.loads(mask.with_name(mask.name.replace("_mask.nii.gz", "_timing.json")).read_text())


# --- Scores ---------------------------------------------------------------------------------------------


def _score(predicted: Path, subject: Path, half: Half) -> dict[str, Any]:
    """The metrics of the prediction against the reference in the scored half only."""
    _, reference = find_subject_files(subject)
    truth, mask = nib.load(str(reference)), nib.load(str(predicted))
    return _metrics(_scored_part(mask, half), _scored_part(truth, half), truth)


def _metrics(predicted: np.ndarray, reference: np.ndarray, grid: nib.Nifti1Image) -> dict[str, Any]:
    """The reported metrics of a predicted mask against the reference (arrays on `grid`'s voxel axes)."""
    spacing = [float(size) for size in grid.header.get_zooms()[:3]]
    return _kept(compute_metrics(predicted != 0, reference != 0, spacing=spacing))


def _phantoms(work: Path) -> list[Path]:
    """Three held-out 2 mm phantoms (`lesionseg sample`, seeds 9301-9303), written once."""
    folder = work / "phantoms"
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _lesionseg(
            ["sample", str(partial), "--n", "3", "--seed", str(PHANTOM_SEEDS[0]), "--spacing", "2"],
            1,
            work / "sample.log",
        )
        partial.rename(folder)
    return sorted(path for path in folder.iterdir() if path.is_dir())


def _phantom_scores(phantoms: list[Path], checkpoint: str, label: str, work: Path, threads: int) -> dict[str, Any]:
    """Each phantom's metrics (whole volume) with the checkpoint."""
    scores = {}
    for phantom in phantoms:
        _, reference = find_subject_files(phantom)
        truth, mask = nib.load(str(reference)), nib.load(str(_predict(phantom, checkpoint, label, work, threads)))
        scores[phantom.name] = _metrics(np.asanyarray(mask.dataobj), np.asanyarray(truth.dataobj), truth)
    return scores


def _phantom_summary(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The phantoms' metrics, their means, and whether each fine-tune kept the DSC drop within the tolerance."""
    means = {
        when: {key: float(np.mean([row[key] for row in rows.values()])) for key in ("dsc", "sensitivity", "ppv")}
        for when, rows in scores.items()
    }
    drops = {side: means["before"]["dsc"] - means[side]["dsc"] for side in means if side != "before"}
    return {"seeds": PHANTOM_SEEDS, "subjects": scores, "mean": means, "dsc_drop": drops,
            "tolerance": PHANTOM_TOLERANCE, "within_tolerance": {side: drop <= PHANTOM_TOLERANCE for side, drop in drops.items()}}  # fmt: skip


# --- Report --------------------------------------------------------------------------------------------


def _machine() -> str:
    """CPU model, cores and torch version."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{models[0] if models else platform.processor()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def _table(report: dict[str, Any]) -> str:
    """The Markdown tables: the scored hemisphere before/after per direction, then the phantom check."""
    columns = ("DSC", "sens.", "PPV", "LTPR", "LFPR", "lesions ref/pred", "FP lesions")
    lines = [f"{report['subject']}, starting from {report['checkpoint']}; {report['machine']}", "",
             "| trained on | scored | when | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]  # fmt: skip
    for side, half in report["halves"].items():
        for when in ("before", "after"):
            m = half[when]
            cells = [f"{m[k]:.3f}" if m[k] is not None else "-" for k in ("dsc", "sensitivity", "ppv", "ltpr", "lfpr")]
            cells += [f"{m['n_lesions_gt']}/{m['n_lesions_pred']}", str(m["n_lesions_fp"])]
            lines.append(f"| {side}, {half['trained']} | {half['scored']} | {when} | " + " | ".join(cells) + " |")
    lines += ["", "| fine-tune | wall s | engine s | steps (kept) | stopped | threads | load before/mean/max during |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for side, half in report["halves"].items():
        f = half["fine_tune"]
        lines.append(f"| {side} | {f['wall_s']:.0f} | {f['engine_elapsed_s']:.0f} | {f['steps']} ({f['best_step']}) | "
                     f"{f['stopped'] or 'no'} | {f['threads']} | {f['load_before']:.2f}/{f['load_during_mean']:.2f}/{f['load_during_max']:.2f} |")  # fmt: skip
    p = report["phantoms"]
    lines += ["", f"Held-out 2 mm phantoms (seeds {p['seeds'][0]}-{p['seeds'][-1]}), mean over the three:", "",
              "| checkpoint | DSC | sens. | PPV | DSC drop |", "|---|---|---|---|---|"]  # fmt: skip
    for when, m in p["mean"].items():
        drop = (
            "-"
            if when == "before"
            else f"{p['dsc_drop'][when]:+.3f} ({'within' if p['within_tolerance'][when] else 'over'} {PHANTOM_TOLERANCE})"
        )
        label = report["checkpoint"] if when == "before" else f"tuned on the {when}"
        lines.append(f"| {label} | {m['dsc']:.3f} | {m['sensitivity']:.3f} | {m['ppv']:.3f} | {drop} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
