"""`lesionseg evaluate`: compare predicted lesion masks with reference masks.

Examples:
    lesionseg evaluate --pred sub-01_mask.nii.gz --gt sub-01_label-lesion_mask.nii.gz
    lesionseg evaluate --pred sub-01_mask.nii.gz --gt ref.nii.gz --prob sub-01_prob.nii.gz --json
    lesionseg evaluate --pred sub-01_prob.nii.gz --threshold 0.5 --gt ref.nii.gz --lesions lesions.csv
    lesionseg evaluate --pred-dir out/ --gt-dir data/ --prob-dir out/ --csv metrics.csv

Folder mode matches subjects by the file-name prefix before the first underscore (``sub-01`` in
``sub-01_mask.nii.gz``). It looks for files matching a pattern in the folder and in its subject
folders one level down; the defaults follow the project's names (``lesionseg predict`` writes
``<subject>_mask``/``<subject>_prob``, references are ``<subject>_label-lesion_mask``). Subjects
present on one side only are reported, not evaluated.

Masks must be binary (0/1): other labels are refused unless ``--merge-labels`` counts every
nonzero label as lesion (a warning names the labels merged). ``--threshold`` is a probability in
[0, 1]. The CSV outputs follow the output policy (`data.outputs`), checked before any file is read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_lesionseg.constants import MASK_SUFFIX
from napari_lesionseg.errors import InvalidInputError, LesionSegWarning

__all__ = ["register"]

_SUMMARY_ROWS = ("mean", "std", "n")


@dataclass(frozen=True)
class _Case:
    subject: str
    pred: Path
    gt: Path
    prob: Path | None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of predicted lesion masks against references (DSC, APR, lesion-wise TPR/FPR, HD95...)",
        description="Voxel-wise, lesion-wise (ISBI 2015) and surface-distance metrics of a prediction against a "
        "reference mask on the same grid, or of every subject in a folder (CSV with mean and std rows).",
    )
    single = parser.add_argument_group("one subject")
    single.add_argument("--pred", type=Path, metavar="MASK", help="predicted mask (NIfTI; 0/1 unless --threshold)")
    single.add_argument("--gt", type=Path, metavar="MASK", help="reference mask (NIfTI, same grid)")
    single.add_argument("--prob", type=Path, metavar="PROB", help="probability map in [0, 1], for APR")
    single.add_argument("--lesions", type=Path, metavar="CSV", help="also write the per-lesion table here")
    folder = parser.add_argument_group("many subjects")
    folder.add_argument("--pred-dir", type=Path, metavar="DIR", help="folder of predicted masks")
    folder.add_argument("--gt-dir", type=Path, metavar="DIR", help="folder of reference masks (or of subject folders)")
    folder.add_argument("--prob-dir", type=Path, metavar="DIR", help="folder of probability maps, for APR")
    folder.add_argument("--pred-pattern", default="*_mask.nii*", metavar="GLOB", help="glob for predictions (default: %(default)s)")
    folder.add_argument("--gt-pattern", default=f"*{MASK_SUFFIX}.nii*", metavar="GLOB", help="glob for references (default: %(default)s)")
    folder.add_argument("--prob-pattern", default="*_prob.nii*", metavar="GLOB", help="glob for probability maps (default: %(default)s)")
    folder.add_argument("--csv", type=Path, metavar="OUT", help="write one row per subject plus mean, std and n rows")
    options = parser.add_argument_group("metrics and output")
    options.add_argument("--threshold", type=float, metavar="T", help="binarise the prediction at >= T (for a probability map given as --pred)")
    # 3 is lesions.DEFAULT_CONNECTIVITY, written out so that `--help` does not import scipy
    options.add_argument("--connectivity", type=int, default=3, choices=(1, 2, 3), help="lesion connectivity: 1 = 6, 2 = 18, 3 = 26 neighbours (default: %(default)s)")
    options.add_argument("--beta", type=float, default=2.0, help="beta of the reported F-beta (F2 is always reported; default: %(default)s)")
    options.add_argument("--merge-labels", action="store_true", help="count every nonzero label of a mask as lesion (default: refuse masks with labels other than 0 and 1)")
    options.add_argument("--overwrite", action="store_true", help="replace existing CSV files that napari-lesionseg did not write")
    options.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    options.add_argument("--quiet", action="store_true", help="no per-subject progress lines (folder mode)")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate one subject (--pred/--gt) or a folder of subjects (--pred-dir/--gt-dir)."""
    single = args.pred is not None or args.gt is not None
    many = args.pred_dir is not None or args.gt_dir is not None
    if single == many:
        raise InvalidInputError("give either --pred and --gt (one subject) or --pred-dir and --gt-dir (a folder)")
    if single:
        other_mode = {"--prob-dir": args.prob_dir, "--csv": args.csv}
    else:
        other_mode = {"--prob": args.prob, "--lesions": args.lesions}
    misplaced = [flag for flag, value in other_mode.items() if value is not None]
    if misplaced:
        raise InvalidInputError(f"{misplaced[0]} does not apply to {'one-subject' if single else 'folder'} mode")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise InvalidInputError(f"--threshold {args.threshold:g}: must be a probability in [0, 1]")
    if single:
        if args.pred is None or args.gt is None:
            raise InvalidInputError("one-subject mode needs both --pred and --gt")
        return _run_single(args)
    if args.pred_dir is None or args.gt_dir is None:
        raise InvalidInputError("folder mode needs both --pred-dir and --gt-dir")
    return _run_folder(args)


def _run_single(args: argparse.Namespace) -> int:
    from napari_lesionseg.evaluation.lesions import lesion_table, match_lesions

    case = _Case("", args.pred, args.gt, args.prob)
    if args.lesions is not None:
        _check_csv_output(args.lesions, "--lesions", _lesion_columns(), [case], args.overwrite)
    result, volumes = _evaluate(case, args)
    if args.lesions is not None:
        pred, gt, prob = volumes
        match = match_lesions(pred.data.astype(bool), gt.data.astype(bool), connectivity=args.connectivity)
        rows = lesion_table(
            match,
            spacing=gt.geometry.spacing,
            prob=None if prob is None else prob.data,
            affine=gt.geometry.canonical_affine,
        )
        _write_csv(args.lesions, [row.as_row() for row in rows], _lesion_columns())
    files = {"pred": str(args.pred), "gt": str(args.gt), "prob": None if args.prob is None else str(args.prob)}
    if args.json:
        print(json.dumps({"files": files, **result}, allow_nan=False))
    else:
        print(_format_table(result, files))
    return 0


def _run_folder(args: argparse.Namespace) -> int:
    cases, unmatched = _match_cases(args)
    if args.csv is not None:
        _check_csv_output(args.csv, "--csv", _metrics_columns(), cases, args.overwrite)
    for side, subjects in unmatched.items():
        if subjects and not args.json:
            consequence = "evaluated without APR" if side == "probability map" else "skipped"
            print(f"lesionseg evaluate: no {side} for {', '.join(subjects)} ({consequence})", file=sys.stderr)
    rows = []
    for index, case in enumerate(cases, start=1):
        result, _ = _evaluate(case, args)
        rows.append({"subject": case.subject, **result})
        if not args.quiet:
            print(f"{case.subject}: dsc {result['dsc']:.4f} ({index}/{len(cases)})", file=sys.stderr)
    summary = _summarise(rows)
    if args.csv is not None:
        _write_csv(args.csv, _csv_rows(rows, summary), _metrics_columns())
    if args.json:
        print(json.dumps({"subjects": rows, **summary, "unmatched": unmatched}, allow_nan=False))
    else:
        print(_format_summary(summary, len(rows), args.csv))
    return 0


def _evaluate(case: _Case, args: argparse.Namespace) -> tuple[dict[str, Any], tuple[Any, Any, Any]]:
    """Load one case's files, check they share a grid, and compute the metrics."""
    from napari_lesionseg.data.volumes import load_volume
    from napari_lesionseg.evaluation.metrics import as_binary_mask, check_probability, compute_metrics

    gt = _binary_mask(load_volume(case.gt, kind="labels"), args.merge_labels)
    if args.threshold is None:
        pred = _binary_mask(load_volume(case.pred, kind="labels"), args.merge_labels)
    else:
        pred = load_volume(case.pred, kind="image")
        pred.data = as_binary_mask(pred.data, name=str(case.pred), threshold=args.threshold)
    prob = None
    if case.prob is not None:
        prob = load_volume(case.prob, kind="image")
        check_probability(prob.data, name=str(case.prob))
    for other in (pred, prob):
        if other is not None and not other.geometry.same_grid(gt.geometry):
            raise InvalidInputError(
                f"{other.path} and {case.gt} are not on the same voxel grid ({other.path.name}: "
                f"{other.geometry.describe()}; {case.gt.name}: {gt.geometry.describe()}); resample the prediction "
                "onto the reference grid first"
            )
    result = compute_metrics(
        pred.data,
        gt.data,
        spacing=gt.geometry.spacing,
        prob=None if prob is None else prob.data,
        connectivity=args.connectivity,
        beta=args.beta,
    )
    return result, (pred, gt, prob)


def _binary_mask(volume: Any, merge: bool) -> Any:
    """The volume as a 0/1 uint8 mask; labels other than 0 and 1 are refused, or merged when asked."""
    import numpy as np

    labels = [int(v) for v in np.unique(volume.data) if v > 1]
    if labels:
        listed = ", ".join(map(str, labels[:8])) + (", ..." if len(labels) > 8 else "")
        if not merge:
            raise InvalidInputError(
                f"{volume.path}: holds label(s) {listed} besides 0 and 1, but a lesion mask is 0/1; pass "
                "--merge-labels to count every nonzero label as lesion, or give a binary mask"
            )
        warnings.warn(f"{volume.path}: merged label(s) {listed} into lesion (--merge-labels)", LesionSegWarning, stacklevel=2)
    volume.data = (volume.data != 0).astype(np.uint8)
    return volume


def _check_csv_output(path: Path, option: str, columns: list[str], cases: list[_Case], overwrite: bool) -> None:
    """The output policy for a CSV, before any file is read: never an input, replaced only if ours."""
    from napari_lesionseg.data.outputs import Output, check_outputs

    inputs = [p for case in cases for p in (case.pred, case.gt, case.prob) if p is not None]
    check_outputs([Output(path, option, "csv", csv_header=",".join(columns))], inputs, overwrite=overwrite)


def _lesion_columns() -> list[str]:
    from napari_lesionseg.evaluation.lesions import Lesion

    return list(Lesion("reference", 1, "TP", 1, 0.0, (0.0, 0.0, 0.0), None, None, None).as_row())


def _metrics_columns() -> list[str]:
    from napari_lesionseg.evaluation.metrics import METRIC_KEYS

    return ["subject", *METRIC_KEYS, "notes"]


def _match_cases(args: argparse.Namespace) -> tuple[list[_Case], dict[str, list[str]]]:
    preds = _files_by_subject(args.pred_dir, args.pred_pattern, "--pred-pattern")
    gts = _files_by_subject(args.gt_dir, args.gt_pattern, "--gt-pattern")
    probs = _files_by_subject(args.prob_dir, args.prob_pattern, "--prob-pattern") if args.prob_dir else {}
    both = sorted(preds.keys() & gts.keys())
    if not both:
        raise InvalidInputError(
            f"no subject has both a prediction in {args.pred_dir} ({args.pred_pattern}: {_listing(preds)}) and a "
            f"reference in {args.gt_dir} ({args.gt_pattern}: {_listing(gts)}); names are matched by the prefix "
            "before the first underscore"
        )
    unmatched = {
        "reference": sorted(preds.keys() - gts.keys()),
        "prediction": sorted(gts.keys() - preds.keys()),
    }
    if args.prob_dir:
        unmatched["probability map"] = [s for s in both if s not in probs]
    cases = [_Case(s, preds[s], gts[s], probs.get(s)) for s in both]
    return cases, unmatched


def _files_by_subject(folder: Path, pattern: str, option: str) -> dict[str, Path]:
    """NIfTI files matching `pattern` in `folder` and its subfolders, keyed by subject prefix."""
    from napari_lesionseg.data.naming import is_nifti_path, nifti_stem

    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: not a folder")
    found: dict[str, list[Path]] = {}
    for path in sorted([*folder.glob(pattern), *folder.glob(f"*/{pattern}")]):
        if path.is_file() and is_nifti_path(path) and not path.name.startswith("."):
            found.setdefault(nifti_stem(path).split("_", 1)[0], []).append(path)
    ambiguous = {s: paths for s, paths in found.items() if len(paths) > 1}
    if ambiguous:
        subject, paths = next(iter(ambiguous.items()))
        raise InvalidInputError(
            f"{folder}: subject {subject} has {len(paths)} files matching {pattern!r} "
            f"({', '.join(p.name for p in paths)}); narrow it with {option}"
        )
    return {s: paths[0] for s, paths in found.items()}


def _summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Mean, sample standard deviation (ddof = 1) and count of the non-null values of each metric."""
    from napari_lesionseg.evaluation.metrics import METRIC_KEYS

    summary: dict[str, dict[str, float | int | None]] = {name: {} for name in _SUMMARY_ROWS}
    for key in METRIC_KEYS:
        values = [float(row[key]) for row in rows if row[key] is not None]
        mean = math.fsum(values) / len(values) if values else None
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
        summary["mean"][key], summary["std"][key], summary["n"][key] = mean, std, len(values)
    return summary


def _csv_rows(rows: list[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from napari_lesionseg.evaluation.metrics import METRIC_KEYS

    out = [
        {"subject": row["subject"], **{k: row[k] for k in METRIC_KEYS}, "notes": _notes_text(row["notes"])}
        for row in rows
    ]
    out.extend({"subject": name, **summary[name], "notes": ""} for name in _SUMMARY_ROWS)
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write `rows` (dicts with the keys `columns`) as CSV, atomically; ``None`` becomes an empty cell."""
    from napari_lesionseg._files import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def _format_table(result: dict[str, Any], files: dict[str, str | None]) -> str:
    from napari_lesionseg.evaluation.metrics import METRIC_KEYS

    lines = [("prediction", files["pred"]), ("reference", files["gt"])]
    if files["prob"] is not None:
        lines.append(("probability", files["prob"]))
    for key in METRIC_KEYS:
        value = result[key]
        lines.append((key, f"null ({result['notes'][key]})" if value is None else _format_value(value)))
    lines.append(("spacing", " x ".join(f"{s:g}" for s in result["spacing"]) + " mm"))
    width = max(len(key) for key, _ in lines) + 2
    return "\n".join(f"{key:<{width}}{value}" for key, value in lines)


def _format_summary(summary: dict[str, dict[str, Any]], n_subjects: int, csv_path: Path | None) -> str:
    from napari_lesionseg.evaluation.metrics import METRIC_KEYS

    lines = [("subjects", str(n_subjects))]
    for key in METRIC_KEYS:
        mean, std, n = summary["mean"][key], summary["std"][key], summary["n"][key]
        if mean is None:
            lines.append((key, "null (no subject has a value)"))
            continue
        spread = f" ± {_format_value(std)}" if std is not None else ""
        lines.append((key, f"{_format_value(mean)}{spread}" + (f"  (n = {n})" if n != n_subjects else "")))
    if csv_path is not None:
        lines.append(("csv", str(csv_path)))
    width = max(len(key) for key, _ in lines) + 2
    return "\n".join(f"{key:<{width}}{value}" for key, value in lines)


def _format_value(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def _notes_text(notes: dict[str, str]) -> str:
    return "; ".join(f"{key}: {reason}" for key, reason in notes.items())


def _listing(files: dict[str, Path]) -> str:
    return ", ".join(p.name for p in list(files.values())[:5]) or "none found"
