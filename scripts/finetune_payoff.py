"""Does the retrain loop pay off? Correct one subject of a new scanner, fine-tune, measure the others.

On 2 mm phantoms of a second scanner (`lesionseg sample --contrast low`, seeds >= 9100: neither the
sample data's 9001-9003 nor the training seeds below 9000), one subject's reference mask stands in
for the clinician's corrected mask and the prediction of the starting checkpoint for the run's mask;
the default fine-tune (`training.corrections.FINE_TUNE_DEFAULTS`, the dock's and `lesionseg
finetune`'s) runs from the bundled checkpoint; then the other subjects of that scanner and held-out
subjects of the original scanner are segmented with the starting and the fine-tuned network
(50 % overlap, B-spline fusion, no TTA, threshold 0.5, minimum lesion size as `lesionseg predict`).

Resumable and cheap to rerun: phantoms, predictions and metrics are cached under --work; a run is
keyed by its settings. Prints a Markdown table and writes ``<work>/runs/<key>/report.json``.

    PYTHONPATH=. .venv/bin/python scripts/finetune_payoff.py --work out/payoff
    PYTHONPATH=. .venv/bin/python scripts/finetune_payoff.py --work out/payoff --contrast soft --set steps=60
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_lesionseg.constants import MIN_LESION_MM3
from napari_lesionseg.data.phantom import make_phantom, write_phantom
from napari_lesionseg.data.subject import load_subject
from napari_lesionseg.engine.predict import predict
from napari_lesionseg.engine.settings import InferenceSettings
from napari_lesionseg.evaluation.lesion_size import drop_small_lesions
from napari_lesionseg.evaluation.metrics import compute_metrics
from napari_lesionseg.training.corrections import FINE_TUNE_DEFAULTS, FineTuneRequest, fine_tune_on_correction

SPACING = 2.0


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    os.environ.setdefault("LESIONSEG_HOME", str(work / "home"))  # never the user's own checkpoints
    corrected = _phantom(work, args.contrast, args.corrected)
    others = [_phantom(work, args.contrast, seed) for seed in args.others]
    original = [_phantom(work, "default", seed) for seed in args.original]
    overrides = dict(_override(item) for item in args.set)
    key = _key(args, overrides)
    run_dir = work / "runs" / key
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if "fine_tune" not in report:
        report["fine_tune"] = _fine_tune(work, args, corrected, overrides, run_dir)
        report_path.write_text(json.dumps(report, indent=1))
    tuned = report["fine_tune"]["checkpoint"]
    report["fine_tune"]["threads"] = _threads_used(tuned)  # what the run used (its checkpoint records it)
    report["fine_tune"]["machine"] = report["fine_tune"]["machine"].split(", torch")[0] + (
        f", torch {torch.__version__}, fine-tune on {report['fine_tune']['threads']} thread(s)"
    )
    for label, folders in (("others", others), ("original", original)):
        report[label] = {
            folder.name: {
                "before": _metrics(work, args.checkpoint, folder, args.overlap),
                "after": _metrics(work, tuned, folder, args.overlap),
            }
            for folder in folders
        }
        report_path.write_text(json.dumps(report, indent=1))
    report["summary"] = _summary(report)
    report_path.write_text(json.dumps(report, indent=1))
    print(_table(report, args), flush=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="out/payoff", help="cache folder (phantoms, predictions, runs)")
    parser.add_argument("--checkpoint", default="fbeta_1.5")
    parser.add_argument("--contrast", default="low", help="the new scanner's contrast profile")
    parser.add_argument("--corrected", type=int, default=9102, help="seed of the corrected subject")
    parser.add_argument("--others", type=int, nargs="+", default=[9101, 9103, 9104, 9105])
    parser.add_argument("--original", type=int, nargs="+", default=[9111, 9112, 9113, 9114])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap", type=float, default=0.5, help="patch overlap of the measurements (0: 4x quicker)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a FineTuneRequest field")
    return parser.parse_args()


def _override(item: str) -> tuple[str, Any]:
    name, _, value = item.partition("=")
    return name, json.loads(value)


def _key(args: argparse.Namespace, overrides: dict[str, Any]) -> str:
    settings = {**dataclasses.asdict(FINE_TUNE_DEFAULTS), **overrides}
    text = json.dumps([args.checkpoint, args.contrast, args.corrected, sorted(settings.items())]
                      + ([args.threads] if args.threads != 2 else []))  # fmt: skip
    return f"{args.contrast}-{args.corrected}-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _phantom(work: Path, contrast: str, seed: int) -> Path:
    folder = work / "phantoms" / contrast / f"sub-{seed}"
    if not folder.is_dir():
        write_phantom(make_phantom(seed, SPACING, contrast=contrast), folder.parent, folder.name, dtype="int16")
    return folder


def _settings(overlap: float) -> InferenceSettings:
    return InferenceSettings(overlap=overlap, tta="none", fusion=("spline",), device="cpu", uncertainty=False,
                             stream_partial=False)  # fmt: skip


def _mask(work: Path, checkpoint: str, folder: Path, overlap: float) -> np.ndarray:
    """The checkpoint's mask of the subject (cached), after the minimum lesion size."""
    name = hashlib.sha256(f"{Path(checkpoint).resolve() if '/' in checkpoint else checkpoint}".encode()).hexdigest()[:10]
    name += "" if overlap == 0.5 else f"-o{overlap:g}"
    cache = work / "masks" / f"{folder.parent.name}-{folder.name}-{name}.npy"
    if not cache.exists():
        subject = load_subject(folder)
        result = predict(subject, checkpoint, _settings(overlap))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, drop_small_lesions(result.mask, subject.geometry.spacing, MIN_LESION_MM3))
    return np.load(cache)


def _metrics(work: Path, checkpoint: str, folder: Path, overlap: float) -> dict[str, float]:
    subject = load_subject(folder)
    metrics = compute_metrics(_mask(work, checkpoint, folder, overlap), subject.mask.data != 0, spacing=subject.geometry.spacing)
    return {key: metrics[key] for key in ("dsc", "sensitivity", "ppv", "n_lesions_pred", "n_lesions_fp", "n_lesions_gt")}


def _fine_tune(work: Path, args: argparse.Namespace, folder: Path, overrides: dict[str, Any], run_dir: Path) -> dict:
    subject = load_subject(folder)
    request = FineTuneRequest(
        checkpoint=args.checkpoint, images={m: v.data for m, v in subject.images.items()},
        mask=subject.mask.data, predicted=_mask(work, args.checkpoint, folder, 0.5), spacing=tuple(subject.geometry.spacing),
        subject_name=subject.name, device="cpu", out=run_dir / "fine-tuned.pt", **overrides,
    )  # fmt: skip
    load_before = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    phases: dict[str, float] = {}

    def show(step: Any) -> None:
        phases.setdefault(step.phase, round(time.perf_counter() - started, 1))  # when each phase began
        phases[f"last_{step.phase}"] = round(time.perf_counter() - started, 1)
        if step.phase == "held_out":
            print(f"step {step.step}: held-out DSC {step.metrics['dsc']:.3f} ({phases['last_held_out']:.0f} s)", flush=True)

    outcome = fine_tune_on_correction(request, on_progress=show)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    threads = _threads_used(outcome.checkpoint)
    return {
        "checkpoint": str(outcome.checkpoint), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "load_before": load_before, "phases_s": phases,
        "load_after": os.getloadavg()[0], "steps": outcome.steps, "best_step": outcome.best_step,
        "stopped": outcome.stopped, "held_out": outcome.held_out, "before": outcome.before, "after": outcome.after,
        "settings": {**{k: getattr(request, k) for k in ("steps", "lr", "batch_size", "fp_weight", "eval_every", "rehearsal",
                                                        "patience", "held_out_fraction")}},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"fine-tune on {threads} thread(s)",
    }  # fmt: skip


def _threads_used(checkpoint: str | Path) -> int:
    from napari_lesionseg.engine.checkpoints import read_metadata

    return int(read_metadata(checkpoint).training["fine_tune"]["threads"])


def _summary(report: dict) -> dict[str, float]:
    def mean(group: str, when: str, key: str) -> float:
        return float(np.mean([row[when][key] for row in report[group].values()]))

    def total(group: str, when: str, key: str) -> float:
        return float(np.sum([row[when][key] for row in report[group].values()]))

    fp_before, fp_after = total("others", "before", "n_lesions_fp"), total("others", "after", "n_lesions_fp")
    return {
        "others_dsc_before": mean("others", "before", "dsc"), "others_dsc_after": mean("others", "after", "dsc"),
        "others_fp_before": fp_before, "others_fp_after": fp_after,
        "others_fp_change": (fp_after - fp_before) / fp_before if fp_before else 0.0,
        "original_dsc_before": mean("original", "before", "dsc"),
        "original_dsc_after": mean("original", "after", "dsc"),
    }  # fmt: skip


def _table(report: dict, args: argparse.Namespace) -> str:
    s, ft = report["summary"], report["fine_tune"]
    header = (
        f"{args.contrast} scanner, corrected seed {args.corrected}; {ft['machine']}; load {ft['load_before']:.1f} -> "
        f"{ft['load_after']:.1f}; {ft['steps']} steps (kept {ft['best_step']}, stopped: {ft['stopped']}); "
        f"{ft['wall_s']:.0f} s wall, {ft['cpu_s']:.0f} s CPU; measured with overlap {args.overlap:g}"
    )
    rows = [
        ("other subjects of that scanner", "mean DSC", s["others_dsc_before"], s["others_dsc_after"]),
        ("", "false-positive lesions", s["others_fp_before"], s["others_fp_after"]),
        ("original scanner", "mean DSC", s["original_dsc_before"], s["original_dsc_after"]),
    ]
    lines = [header, "", "| subjects | metric | before | after | change |", "|---|---|---:|---:|---:|"]
    for group, metric, before, after in rows:
        if "lesions" in metric:
            change = f"{100 * (after - before) / before:+.0f} %" if before else f"{after - before:+.0f}"
            lines.append(f"| {group} | {metric} | {before:.0f} | {after:.0f} | {change} |")
        else:
            lines.append(f"| {group} | {metric} | {before:.3f} | {after:.3f} | {after - before:+.3f} |")
    for group in ("others", "original"):
        for name, row in report[group].items():
            b, a = row["before"], row["after"]
            cells = f"{b['dsc']:.3f} / {b['n_lesions_fp']} | {a['dsc']:.3f} / {a['n_lesions_fp']}"
            lines.append(f"| {group} {name} | DSC / FP lesions | {cells} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
