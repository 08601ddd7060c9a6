"""`lesionseg train`: train (or fine-tune) a network on subject folders; runs under torchrun too.

Examples:
    lesionseg train --data train/ --val val/ --loss fbeta --beta 1.5 --out fbeta_1.5.pt
    torchrun --nproc_per_node 2 -m napari_lesionseg.cli train --data train/ --out model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from napari_lesionseg.constants import (
    CORE_MODALITIES,
    LEARNING_RATE,
    LR_DECAY,
    LR_DECAY_EVERY,
    LR_INTERVAL_GROWTH,
    LR_INTERVAL_GROWTH_EVERY,
    MIN_LESION_VOXELS,
    OVERLAP,
)
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import LOSSES, PRECISIONS

__all__ = ["register"]

_SHOWN_METRICS = ("dsc", "sensitivity", "ppv", "f2", "apr")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a network on subject folders (resumable; DDP under torchrun)",
        description="Train a lesion-segmentation network on subject folders with the paper's patch "
        "selection, augmentation and learning-rate schedule. Runs under `torchrun --nproc_per_node N` "
        "with DistributedDataParallel. Ctrl-C stops after the current step; --resume continues.",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data", action="append", required=True, metavar="DIR",
        help="training subjects: a subject folder or a folder of them (repeatable)",
    )
    data.add_argument(
        "--val", action="append", default=[], metavar="DIR",
        help="held-out validation subjects (repeatable)",
    )
    data.add_argument(
        "--modalities", metavar="LIST", default=",".join(CORE_MODALITIES),
        help="input channels, comma-separated (default: %(default)s)",
    )
    data.add_argument(
        "--optional", metavar="LIST", default="",
        help="those of --modalities the network learns to run without (modality dropout; a subject "
        "lacking one gets 0 there, as inference feeds it), comma-separated (default: none)",
    )
    data.add_argument(
        "--modality-dropout", type=float, default=0.3, metavar="P",
        help="with --optional: chance that each optional input is zeroed in a patch (default: %(default)s)",
    )
    data.add_argument("--out", required=True, metavar="CHECKPOINT", help="checkpoint file written at the end (.pt)")
    data.add_argument(
        "--work-dir", metavar="DIR",
        help="resumable state and history.csv/json (default: <out stem>_training/ beside --out)",
    )
    data.add_argument("--name", help="checkpoint name (default: the stem of --out)")
    model = parser.add_argument_group("network and loss")
    model.add_argument(
        "--preset", default="compact", choices=("paper", "compact", "unet"),
        help="network preset (default: %(default)s)",
    )
    model.add_argument(
        "--model-param", action="append", default=[], metavar="KEY=VALUE",
        help="network config override (repeatable)",
    )
    model.add_argument("--init", metavar="CHECKPOINT", help="fine-tune: start from this checkpoint (name or path)")
    model.add_argument(
        "--warm-start", action="store_true",
        help="with --init: train a new network from its weights (another loss, a longer schedule), not a "
        "fine-tune: the start is recorded, not as the checkpoint's parent",
    )
    model.add_argument("--loss", default="fbeta", choices=LOSSES, help="loss function (default: %(default)s)")
    model.add_argument("--beta", type=float, metavar="B", default=1.5, help="F-beta loss beta (default: %(default)s)")
    model.add_argument(
        "--loss-param", action="append", default=[], metavar="KEY=VALUE",
        help="extra loss parameter, e.g. gamma=2 (repeatable)",
    )
    sampling = parser.add_argument_group("patches")
    sampling.add_argument(
        "--patch-size", type=int, nargs="+", metavar="N",
        help="patch size, 1 or 3 numbers (default: the preset's)",
    )
    sampling.add_argument(
        "--patches-per-subject", type=int, metavar="N", default=8,
        help="patches per subject per epoch (default: %(default)s)",
    )
    sampling.add_argument(
        "--min-lesion-voxels", type=int, metavar="N", default=MIN_LESION_VOXELS,
        help="lesion voxels a patch needs (default: %(default)s, the paper's)",
    )
    sampling.add_argument(
        "--spacing", type=float, metavar="MM", default=None,
        help="resample every subject to MM isotropic voxels first, as inference resamples into the model's space "
        "(default: the --init checkpoint's, else each subject's own grid, the checkpoint then recording their median)",
    )
    sampling.add_argument(
        "--brain-patches", type=float, metavar="F", default=0.0,
        help="share of patches centred anywhere in the head/brain, lesions or not (default: 0, the paper's selection only)",
    )
    sampling.add_argument(
        "--lesion-patches", type=float, metavar="F", default=0.0,
        help="share of patches centred near one lesion, every lesion equally likely whatever its size, so small "
        "lesions weigh as much as large ones (default: 0)",
    )
    sampling.add_argument(
        "--augment", default="paper", choices=("paper", "mirror8", "none"),
        help="patch augmentation (default: %(default)s)",
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument(
        "--batch-size", type=int, metavar="N", default=2,
        help="patches per step and process (default: %(default)s)",
    )
    opt.add_argument("--epochs", type=int, metavar="N", default=100, help="epochs (default: %(default)s)")
    opt.add_argument("--max-steps", type=int, metavar="N", help="stop after this many steps")
    opt.add_argument("--lr", type=float, default=LEARNING_RATE, help="Adam learning rate (default: %(default)s)")
    opt.add_argument(
        "--lr-decay", type=float, metavar="F", default=LR_DECAY,
        help="decay factor (default: %(default)s)",
    )
    opt.add_argument(
        "--lr-decay-every", type=int, metavar="N", default=LR_DECAY_EVERY,
        help="initial decay interval in steps (default: %(default)s)",
    )
    opt.add_argument(
        "--lr-growth", type=float, metavar="F", default=LR_INTERVAL_GROWTH,
        help="interval growth factor (default: %(default)s)",
    )
    opt.add_argument(
        "--lr-growth-every", type=int, metavar="N", default=LR_INTERVAL_GROWTH_EVERY,
        help="steps between interval growths (default: %(default)s)",
    )
    opt.add_argument("--seed", type=int, metavar="N", default=0, help="random seed (default: %(default)s)")
    opt.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    opt.add_argument(
        "--precision", default="auto", choices=PRECISIONS,
        help="network arithmetic; auto: bfloat16 on a CPU with native bfloat16, float16 with gradient scaling "
        "on CUDA, else float32; losses are float32 (default: %(default)s)",
    )
    opt.add_argument("--threads", type=int, metavar="N", help="CPU threads per process (torch.set_num_threads)")
    run = parser.add_argument_group("validation and saving")
    run.add_argument(
        "--val-every", type=int, metavar="N", default=1,
        help="validate every N epochs (default: %(default)s)",
    )
    run.add_argument(
        "--val-overlap", type=float, metavar="F", default=OVERLAP,
        help="patch overlap for validation (default: %(default)s)",
    )
    run.add_argument(
        "--val-tta", default="paper", choices=("paper", "mirror8", "none"),
        help="test-time augmentation in validation (default: %(default)s)",
    )
    run.add_argument(
        "--save-every", type=int, metavar="N", default=50,
        help="save the resumable state every N steps (default: %(default)s)",
    )
    run.add_argument("--resume", action="store_true", help="continue the run saved in the work folder, if any")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out file that is not a napari-lesionseg checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _names(listed: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in listed.split(",") if m.strip())


def _run(args: argparse.Namespace) -> int:
    import torch

    from napari_lesionseg.training import TrainingConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainingConfig(
        data=args.data, val=args.val, out=args.out, work_dir=args.work_dir, name=args.name,
        modalities=_names(args.modalities), spacing=args.spacing, optional_modalities=_names(args.optional),
        modality_dropout=args.modality_dropout if args.optional else 0.0,
        preset=args.preset, model=_key_values(args.model_param, "--model-param"), init_checkpoint=args.init,
        warm_start=args.warm_start,
        loss=args.loss, beta=args.beta, loss_params=_key_values(args.loss_param, "--loss-param"),
        patch_size=_patch_size(args.patch_size), patches_per_subject=args.patches_per_subject,
        min_lesion_voxels=args.min_lesion_voxels, brain_patch_fraction=args.brain_patches,
        lesion_patch_fraction=args.lesion_patches,
        augment=args.augment, batch_size=args.batch_size,
        epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, lr_decay=args.lr_decay,
        lr_decay_every=args.lr_decay_every, lr_growth=args.lr_growth, lr_growth_every=args.lr_growth_every,
        seed=args.seed, device=args.device, precision=args.precision, val_every=args.val_every,
        val_overlap=args.val_overlap, val_tta=args.val_tta, save_every=args.save_every, resume=args.resume,
    )
    _check_training_outputs(config, overwrite=args.overwrite)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    cancel = threading.Event()
    bar = _ProgressBar(enabled=main_rank and not args.quiet)
    with _stop_on_signals(cancel, announce=main_rank):
        result = train(config, on_progress=bar.update, cancel=cancel)
    bar.close()
    if main_rank:
        _report(result, config)
    return 130 if result.cancelled else 0


def _check_training_outputs(config: Any, *, overwrite: bool) -> None:
    """The output policy for --out and the work folder, before any data is read: never a training or
    validation file, a data folder, the initial or a bundled checkpoint."""
    from napari_lesionseg.data.naming import is_nifti_path
    from napari_lesionseg.data.outputs import Output, check_outputs
    from napari_lesionseg.engine.checkpoints import BUNDLED_DIR, resolve_checkpoint

    folders = [Path(p) for p in (*config.data, *config.val)]
    inputs: list[Path] = [*folders, *BUNDLED_DIR.glob("*.pt")]
    for folder in folders:
        for pattern in ("*", "*/*"):
            inputs.extend(p for p in folder.glob(pattern) if is_nifti_path(p))
    if config.init_checkpoint is not None:
        inputs.append(resolve_checkpoint(config.init_checkpoint))
    outputs = [Output(Path(config.out), "--out", "checkpoint"), Output(config.run_dir, "the work folder (--work-dir)", "folder")]
    check_outputs(outputs, inputs, overwrite=overwrite)


def _report(result: Any, config: Any) -> None:
    if result.cancelled:
        print(
            f"stopped at step {result.steps}/{result.total_steps}; state saved in {config.run_dir}; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        return
    skipped = f" ({result.skipped_steps} skipped: non-finite gradients)" if result.skipped_steps else ""
    print(f"checkpoint {result.checkpoint} after {result.steps} steps{skipped}; history in {config.run_dir}")
    if result.validation:
        print(_metrics_line(result.validation["mean"]))


def _metrics_line(metrics: dict[str, Any]) -> str:
    return "validation: " + "  ".join(
        f"{k}={metrics[k]:.3f}" for k in _SHOWN_METRICS if metrics.get(k) is not None
    )


class _stop_on_signals:
    """Turn SIGINT/SIGTERM into a cancel (stop after this step, save); a second SIGINT aborts."""

    def __init__(self, cancel: threading.Event, *, announce: bool) -> None:
        self.cancel, self.announce, self.previous = cancel, announce, {}

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.cancel.set()
        if self.announce:
            print("\nstopping after the current step (Ctrl-C again to abort)...", file=sys.stderr)


class _ProgressBar:
    """A one-line progress bar on stderr (a line every 5 % when stderr is not a terminal)."""

    def __init__(self, *, enabled: bool, width: int = 30) -> None:
        self.enabled, self.width = enabled, width
        self.tty = sys.stderr.isatty()
        self.last_fraction = -1.0

    def update(self, progress: Any) -> None:
        if not self.enabled:
            return
        if progress.phase == "validate":
            self._write(f"epoch {progress.epoch + 1}: {_metrics_line(progress.metrics or {})}", newline=True)
            return
        if progress.phase != "train":  # "done": the summary follows
            return
        total = max(progress.total_steps, 1)
        fraction = progress.step / total
        if not self.tty and fraction - self.last_fraction < 0.05 and progress.step != total:
            return
        self.last_fraction = fraction
        filled = int(self.width * fraction)
        eta = progress.elapsed_s / max(fraction, 1e-9) * (1 - fraction) if progress.step else 0.0
        loss = "" if progress.loss is None else f" loss {progress.loss:.4f}"
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {progress.step}/{total} "
            f"epoch {progress.epoch + 1}/{progress.epochs}{loss} lr {progress.lr:.2e} "
            f"{_clock(progress.elapsed_s)} (eta {_clock(eta)})"
        )
        self._write(line, newline=not self.tty)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)

    def _write(self, line: str, *, newline: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if newline else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _patch_size(values: list[int] | None) -> tuple[int, int, int] | None:
    if values is None:
        return None
    if len(values) == 1:
        return (values[0],) * 3  # type: ignore[return-value]
    if len(values) == 3:
        return tuple(values)  # type: ignore[return-value]
    raise InvalidInputError(f"--patch-size takes 1 or 3 numbers, got {len(values)}: {values}")


def _key_values(items: list[str], option: str) -> dict[str, Any]:
    """Parse KEY=VALUE pairs; values are read as JSON when they parse (numbers, true, lists)."""
    parsed = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed
