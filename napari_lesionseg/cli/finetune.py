"""`lesionseg finetune`: the Fine-tune dock's fine-tune on a corrected subject, from the command line.

Example:
    lesionseg finetune data/sub-01 --corrected data/sub-01/sub-01_label-lesion_corrected.nii.gz \
        --checkpoint fbeta_1.5 --out fbeta_1.5-sub-01.pt

It calls the dock's engine (`training.corrections.fine_tune_on_correction`) with the dock's defaults
(`FINE_TUNE_DEFAULTS`), so the same data, settings and seed give the same checkpoint on a cluster
as in the app. It prints the held-out scores as they come and the before/after metrics on the
corrected subject; the checkpoint records its parent, lineage, settings and replayed cases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.training.correction_settings import FINE_TUNE_DEFAULTS
from napari_lesionseg.vocabulary import DEVICES, LOSSES, PRECISIONS

if TYPE_CHECKING:
    from napari_lesionseg.training.corrections import FineTuneRequest

__all__ = ["register", "request_from_arguments"]

#: The metrics printed before and after (keys of `training.validation.SUMMARY_KEYS`).
_SHOWN = ("dsc", "sensitivity", "ppv", "f2", "ltpr", "lfpr")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `finetune` subcommand."""
    defaults = FINE_TUNE_DEFAULTS
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a checkpoint on a corrected subject (the Fine-tune dock's engine and defaults)",
        description="Fine-tune CHECKPOINT on SUBJECT_DIR with the corrected mask: patches on the corrected regions, "
        "lesion and brain patches, replay of the checkpoint's earlier corrected cases, early stopping on a held-out "
        "slab. Prints before/after metrics on the corrected subject; writes OUT with its lineage.",
    )
    parser.add_argument("subject", metavar="SUBJECT_DIR", help="the subject folder (its modality files)")
    parser.add_argument("--corrected", required=True, metavar="MASK", help="the corrected lesion mask (NIfTI, the subject's grid)")
    parser.add_argument("--checkpoint", required=True, metavar="NAME_OR_PATH", help="the checkpoint to start from")
    parser.add_argument("--out", required=True, metavar="CKPT", help="the new checkpoint (.pt; never overwritten)")
    parser.add_argument("--predicted", metavar="MASK", help="the run's mask that was corrected (default: the checkpoint's own prediction)")
    parser.add_argument("--also", action="append", default=[], metavar="DIR", help="subject folder(s) with reference masks to replay too (repeatable)")
    parser.add_argument("--check", action="append", default=[], metavar="DIR", help="subject folder(s) with masks scored before and after, never trained on (repeatable)")
    parser.add_argument("--no-replay", dest="replay", action="store_false", help="do not replay the checkpoint's earlier corrected cases")
    run = parser.add_argument_group("settings (defaults: the Fine-tune dock's)")
    run.add_argument("--loss", choices=LOSSES, help="default: the checkpoint's")
    run.add_argument("--beta", type=float, help="F-beta's beta (default: the checkpoint's)")
    run.add_argument("--steps", type=int, default=defaults.steps, help="iterations at most (default: %(default)s)")
    run.add_argument("--lr", type=float, default=defaults.lr, help="learning rate (default: %(default)s)")
    run.add_argument("--batch-size", type=int, default=defaults.batch_size, help="patches per step (default: %(default)s)")
    run.add_argument("--fp-weight", type=float, default=defaults.fp_weight, help="false-positive penalty weight (default: %(default)s)")
    run.add_argument("--held-out-fraction", type=float, default=defaults.held_out_fraction, help="share of the lesion voxels held out for early stopping (default: %(default)s)")
    run.add_argument("--eval-every", type=int, default=defaults.eval_every, help="steps between held-out scores (default: %(default)s)")
    run.add_argument("--patience", type=int, default=defaults.patience, help="held-out scores without improvement before stopping (default: %(default)s)")
    run.add_argument("--held-out-tolerance", type=float, default=defaults.held_out_tolerance, metavar="DSC", help="a held-out DSC within this of the best counts as no worse: the later weights are kept (default: %(default)s)")
    run.add_argument("--time-limit", type=float, default=defaults.time_limit_s, metavar="S", help="stop training after S seconds, keeping the best weights; 0: no limit (default: %(default)s)")
    run.add_argument("--rehearse", type=int, default=defaults.rehearsal, metavar="N", help="subjects of the training generator rehearsed beside the correction; measured to keep a generator-trained network's other scanners, to cost a phantom-trained one (default: %(default)s)")
    run.add_argument("--device", default="auto", choices=DEVICES, help="default: %(default)s")
    run.add_argument("--precision", default="auto", choices=PRECISIONS, help="network arithmetic; auto: bfloat16 on a CPU with native bfloat16, float16 on CUDA (default: %(default)s)")
    run.add_argument("--threads", type=int, help="CPU threads (default: one when the machine is busy, else torch's)")
    run.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    run.add_argument("--no-measure", dest="measure", action="store_false", help="skip the before/after measurement")
    run.add_argument("--quiet", action="store_true", help="print only the result")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_lesionseg.training.corrections import fine_tune_on_correction

    request = request_from_arguments(args)
    outcome = fine_tune_on_correction(request, on_progress=None if args.quiet else _printer())
    print(_result(outcome))
    return 0


def request_from_arguments(args: argparse.Namespace) -> FineTuneRequest:
    """The `FineTuneRequest` the arguments describe, after checking the files (one-line errors naming them)."""
    from napari_lesionseg.data.subject import load_subject
    from napari_lesionseg.engine.checkpoints import read_metadata
    from napari_lesionseg.engine.requirements import check_modalities
    from napari_lesionseg.training.corrections import FineTuneRequest

    out = Path(args.out)
    if out.suffix != ".pt":
        raise InvalidInputError(f"{out}: the new checkpoint needs the .pt suffix")
    if out.exists():
        raise InvalidInputError(f"{out}: a file is already there; a fine-tune never overwrites a checkpoint")
    metadata = read_metadata(args.checkpoint)
    subject = load_subject(args.subject)
    modalities = [m for m in check_modalities(metadata, tuple(subject.images)) if m is not None]
    corrected = _mask_on_grid(args.corrected, subject)
    return FineTuneRequest(
        checkpoint=args.checkpoint, images={m: subject.images[m].data for m in modalities}, mask=corrected,
        spacing=tuple(float(s) for s in subject.geometry.spacing),
        predicted=None if args.predicted is None else _mask_on_grid(args.predicted, subject),
        subject_name=subject.name, mask_name=str(args.corrected), folders=tuple(args.also), check_folders=tuple(args.check),
        replay=args.replay,
        loss=args.loss, beta=args.beta, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
        fp_weight=args.fp_weight, held_out_fraction=args.held_out_fraction, eval_every=args.eval_every,
        patience=args.patience, held_out_tolerance=args.held_out_tolerance, time_limit_s=args.time_limit or None,
        rehearsal=args.rehearse, precision=args.precision,
        threads=args.threads, device=args.device, seed=args.seed, measure=args.measure, out=out,
    )  # fmt: skip


def _mask_on_grid(path: str, subject: Any) -> Any:
    import numpy as np

    from napari_lesionseg.data.volumes import load_volume

    volume = load_volume(path, kind="labels")
    others = [int(v) for v in np.unique(volume.data) if v > 1]
    if others:  # an image or a label map given as the mask would be learnt as lesion everywhere it is nonzero
        listed = ", ".join(map(str, others[:5])) + (", ..." if len(others) > 5 else "")
        raise InvalidInputError(
            f"{path}: holds value(s) {listed} besides 0 and 1, but a lesion mask is 0/1 (is it an image or a "
            "label map?); give the binary corrected mask"
        )
    if not volume.geometry.same_grid(subject.geometry):
        raise InvalidInputError(
            f"{path}: not on the grid of {subject.name} ({volume.geometry.describe()} vs {subject.geometry.describe()})"
        )
    return volume.data.astype(np.uint8)


def _printer() -> Any:
    def show(step: Any) -> None:
        if step.phase == "baseline" and step.metrics:
            print(f"before: DSC {step.metrics.get('dsc', float('nan')):.3f}", file=sys.stderr)
        elif step.phase == "check":
            print("scoring the check subjects with the starting network...", file=sys.stderr)
        elif step.phase == "held_out":
            m = step.metrics
            print(f"step {step.step}/{step.total_steps}: held-out DSC {m['dsc']:.3f} (best {m['best_dsc']:.3f} "
                  f"at step {int(m['best_step'])}), {int(m['fp_lesions'])} false-positive lesions, {step.elapsed_s:.0f} s",
                  file=sys.stderr)  # fmt: skip

    return show


def _result(outcome: Any) -> str:
    from napari_lesionseg.evaluation.tables import comparison_rows, verdict
    from napari_lesionseg.training.correction_checks import CHECK_COLUMNS, checked_rows

    kept = "the starting weights (no step beat them on the held-out slab)" if outcome.best_step == 0 else f"step {outcome.best_step}"
    stopped = {"patience": ", stopped early", "time": ", stopped at the time limit"}.get(outcome.stopped or "", "")
    lines = [
        (
            f"{outcome.checkpoint}: fine-tuned from {outcome.parent!r}, {outcome.steps} of {outcome.total_steps} steps"
            f"{stopped}; kept {kept}; replayed {len(outcome.replayed)} earlier case(s); "
            + (f"rehearsed {len(outcome.rehearsed)} generator subject(s); " if outcome.rehearsed else "")
            + f"{outcome.elapsed_s:.0f} s"
        ),
    ]
    if outcome.before:
        lines.append(f"{'metric':<12} {'before':>8} {'after':>8} {'change':>8}")
        lines += [f"{row[0]:<12} {row[1]:>8} {row[2]:>8} {row[3]:>8}" for row in comparison_rows(outcome.before, outcome.after, _SHOWN)]
        lines.append(verdict(outcome.before, outcome.after))
    if outcome.checked_after:
        lines.append("check subjects (never trained on): " + ", ".join(CHECK_COLUMNS))
        lines += ["  " + " ".join(f"{cell:>10}" for cell in row) for row in checked_rows(outcome.checked_before, outcome.checked_after)]
    return "\n".join(lines)
