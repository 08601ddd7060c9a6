"""`lesionseg predict`: segment subjects with a checkpoint, writing outputs on each input's grid.

Examples:
    lesionseg predict data/sub-01 --checkpoint fbeta_1.5 --prob-out sub-01_prob.nii.gz --mask-out sub-01_mask.nii.gz
    lesionseg predict FLAIR=f.nii.gz T1w=t1.nii.gz T2w=t2.nii.gz PDw=pd.nii.gz --checkpoint model.pt --mask-out mask.nii.gz
    lesionseg predict data/ --checkpoint model.pt --mask-out "out/{subject}_mask.nii.gz"
    torchrun --nproc_per_node 4 --no-python lesionseg predict data/ --checkpoint model.pt --mask-out "out/{subject}_mask.nii.gz"
    lesionseg predict data/sub-01 --beta 1.5 --mask-out mask.nii.gz   # the beta-1.5 checkpoint these inputs can run

INPUT is a subject folder (``<subject>_<MODALITY>.nii.gz`` files), a folder of subject folders
(a batch), or modality files (``NAME=PATH``, or files whose names end in ``_FLAIR``, ``_T1w``...).
A batch is split across processes with ``--shard K/N``, or automatically under ``torchrun``
(``RANK``/``WORLD_SIZE``; each process takes every N-th subject and, on CUDA, the GPU
``LOCAL_RANK``). No process group is needed: subjects are independent.

Modalities on other grids than the FLAIR are resampled onto it (one note on stderr), and the network
runs in its model space (`engine.model_space`); the outputs are on the FLAIR's grid.

Every output path is checked before the checkpoint is loaded (`data.outputs`: never an input,
never two outputs on one path, never a subject-file name, an existing file replaced only if
napari-lesionseg wrote it and it is not write-protected, or with ``--overwrite``; folders created and probed). A subject's outputs
are renamed into place together, after all of them are written.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_lesionseg.cli._predict_inputs import Planned, subject_loaders
from napari_lesionseg.constants import MIN_LESION_MM3, OVERLAP, THRESHOLD
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import FUSION_MODES, PRECISIONS

if TYPE_CHECKING:
    from napari_lesionseg.data.subject import Subject
    from napari_lesionseg.engine.results import InferenceResult
    from napari_lesionseg.engine.settings import InferenceSettings

__all__ = ["register"]

_PLACEHOLDER = "{subject}"


@dataclass(frozen=True)
class _Outputs:
    prob: str | None
    mask: str | None
    uncertainty: str | None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `predict` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="segment subjects with a checkpoint (patches, test-time augmentation, B-spline fusion)",
        description="Cut each volume into overlapping patches, predict every patch under the paper's four "
        "augmentations and fuse the predictions (Sec. III.C). Outputs are written on the input's grid and affine. "
        "Output paths may contain {subject}; they must when several subjects are given.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="a subject folder, a folder of subject folders, or modality files (NAME=PATH or *_FLAIR.nii.gz...)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", metavar="NAME_OR_PATH", help="checkpoint name (see `lesionseg checkpoints`) or .pt file")
    model.add_argument("--beta", type=float, metavar="B", help="the checkpoint with this F-beta that runs on the inputs given, using the most of them")
    out = parser.add_argument_group("outputs")
    out.add_argument("--prob-out", metavar="PATH", help="fused lesion probability (float32 NIfTI)")
    out.add_argument("--mask-out", metavar="PATH", help="binary lesion mask (uint8 NIfTI)")
    out.add_argument("--uncertainty-out", metavar="PATH", help="per-voxel spread of the overlapping/augmented predictions")
    run = parser.add_argument_group("inference")
    run.add_argument("--fusion", default="spline", choices=FUSION_MODES, help="patch fusion (default: %(default)s, the paper's)")
    run.add_argument("--overlap", type=float, default=OVERLAP, help="patch overlap in [0, 1) (default: %(default)s)")
    run.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True, help="test-time augmentation (default: on)")
    run.add_argument("--brain-only", action=argparse.BooleanOptionalAction, default=True, help="lesions only inside the brain estimated from the FLAIR: none in glands, fat or scalp outside the skull (default: on)")
    run.add_argument("--tta-set", default="paper", choices=("paper", "mirror8"), help="paper: identity + 180-degree rotation in each plane; mirror8: all 8 mirrorings (default: %(default)s)")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="auto: CUDA, then MPS, then CPU (default: %(default)s)")
    run.add_argument("--batch-size", type=int, default=2, help="patches per network call (default: %(default)s)")
    run.add_argument("--threads", type=int, help="CPU threads (default: one when the machine is already busy, else torch's)")
    run.add_argument("--precision", default="auto", choices=PRECISIONS, help="network arithmetic; auto: bfloat16 on a CPU with native bfloat16, float16 on CUDA, else float32 (default: %(default)s)")
    run.add_argument("--patch-size", type=int, nargs="+", metavar="N", help="patch size, 1 or 3 numbers (default: the checkpoint's)")
    run.add_argument("--border", default="flush", choices=("flush", "pad"), help="flush: last patch flush with the border; pad: the paper's half-patch padding (default: %(default)s)")
    run.add_argument("--threshold", type=float, default=THRESHOLD, help="mask threshold (default: %(default)s)")
    run.add_argument("--min-lesion-mm3", type=float, default=MIN_LESION_MM3, metavar="MM3", help="drop mask components smaller than this volume (default: %(default)s, MSSEG's; 0 keeps all)")
    run.add_argument("--resample", action="store_true", help="accepted for older scripts: modalities on other grids are always resampled onto the FLAIR grid")
    run.add_argument("--shard", metavar="K/N", help="process every N-th subject starting at K (0-based); set automatically under torchrun")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    out.add_argument("--overwrite", action="store_true", help="replace existing output files that napari-lesionseg did not write")
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Load the checkpoint once (or per subject, with --beta), then segment and write every subject of this shard."""
    outputs = _Outputs(args.prob_out, args.mask_out, args.uncertainty_out)
    planned = subject_loaders(args.inputs)
    _check_outputs(outputs, len(planned))
    rank, world = _shard(args.shard)
    settings = _settings(args, rank)
    from napari_lesionseg.evaluation.lesion_size import check_min_lesion_mm3

    check_min_lesion_mm3(args.min_lesion_mm3)
    checkpoints = _Checkpoints(args.checkpoint, args.beta)
    targets = _output_paths(outputs, planned, checkpoints.paths(), overwrite=args.overwrite)
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError(f"--threads must be >= 1, got {args.threads}")
    from napari_lesionseg.engine.devices import cpu_threads, resolve_device

    mine = planned[rank::world]
    if not mine:  # more shards than subjects: this one has nothing to do, and says so
        print(f"lesionseg predict: shard {rank}/{world} holds no subject ({len(planned)} given); nothing to do",
              file=sys.stderr)  # fmt: skip
        return 0
    with cpu_threads(args.threads, resolve_device(settings.device)):
        _predict_shard(args, mine, checkpoints, settings, targets)
    return 0


def _predict_shard(args: argparse.Namespace, planned: list[Planned], checkpoints: _Checkpoints,
                   settings: InferenceSettings, targets: dict[tuple[Path, str], list[tuple[str, Path]]]) -> None:  # fmt: skip
    """Segment and write every subject of this shard."""
    for subject_plan in planned:
        subject = subject_plan.load()
        if not args.quiet:
            for note in subject.notes:
                print(note, file=sys.stderr)
        checkpoint = checkpoints.for_subject(subject)
        if not args.quiet:
            print(_checkpoint_line(subject, checkpoint[1]), file=sys.stderr)
        result = _predict_one(subject, checkpoint, settings, quiet=args.quiet)
        result = _without_small_lesions(result, subject, args.min_lesion_mm3)
        written = _write(subject, result, targets[subject_plan.folder, subject_plan.name])
        if not args.quiet:
            print(_summary(subject, result, written), file=sys.stderr)


class _Checkpoints:
    """The checkpoint of each subject: the one named, or by --beta the one its modalities can run."""

    def __init__(self, name: str | None, beta: float | None) -> None:
        self._name, self._beta = name, beta
        self._loaded: dict[str, Any] = {}

    def paths(self) -> list[Path]:
        """The files the run may read (no output may replace one)."""
        from napari_lesionseg.engine.checkpoints import list_checkpoints, resolve_checkpoint

        return [resolve_checkpoint(self._name)] if self._name is not None else [info.path for info in list_checkpoints()]

    def for_subject(self, subject: Subject) -> Any:
        from napari_lesionseg.engine.catalog import pick_by_beta
        from napari_lesionseg.engine.checkpoints import list_checkpoints, load_checkpoint

        path = self._name
        if path is None:
            path = str(pick_by_beta(list_checkpoints(), float(self._beta), subject.modalities, subject.name).path)
        if path not in self._loaded:
            self._loaded[path] = load_checkpoint(path, device="cpu")
        return self._loaded[path]


def _output_paths(
    outputs: _Outputs, planned: list[Planned], checkpoints: list[Path], *, overwrite: bool
) -> dict[tuple[Path, str], list[tuple[str, Path]]]:
    """Every subject's ``(output kind, path)`` list, after checking them all against the output policy."""
    from napari_lesionseg.data.outputs import batch_outputs, check_outputs

    subjects = [(p.name, p.folder) for p in planned]
    targets: dict[tuple[Path, str], list[tuple[str, Path]]] = {(p.folder, p.name): [] for p in planned}
    checked = []
    for kind, template in (("prob", outputs.prob), ("mask", outputs.mask), ("uncertainty", outputs.uncertainty)):
        if template is None:
            continue
        for (name, folder), output in zip(subjects, batch_outputs(template, subjects, f"--{kind}-out")):
            targets[folder, name].append((kind, output.path))
            checked.append(output)
    inputs = [*checkpoints, *(path for p in planned for path in p.inputs)]
    check_outputs(checked, inputs, overwrite=overwrite)
    return targets


def _settings(args: argparse.Namespace, rank: int) -> InferenceSettings:
    from napari_lesionseg.engine.settings import InferenceSettings

    device = args.device
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(local_rank) % torch.cuda.device_count()}"
    patch = args.patch_size
    if patch is not None and len(patch) not in (1, 3):
        raise InvalidInputError(f"--patch-size takes 1 or 3 numbers, got {len(patch)}")
    return InferenceSettings(
        patch_size=None if patch is None else tuple(patch * 3 if len(patch) == 1 else patch),
        overlap=args.overlap,
        fusion=(args.fusion,),
        tta=args.tta_set if args.tta else "none",
        brain_only=args.brain_only,
        border=args.border,
        batch_size=args.batch_size,
        device=device,
        precision=args.precision,
        threshold=args.threshold,
        uncertainty=args.uncertainty_out is not None,
        stream_partial=False,
    )


def _predict_one(subject: Subject, checkpoint: Any, settings: InferenceSettings, *, quiet: bool) -> InferenceResult:
    from napari_lesionseg.cli._patch_progress import PatchProgress
    from napari_lesionseg.engine.predict import predict

    progress = PatchProgress(subject.name, quiet=quiet)
    result = predict(subject, checkpoint, settings, callback=progress)
    progress.close()
    return result


def _without_small_lesions(result: InferenceResult, subject: Subject, min_mm3: float) -> InferenceResult:
    import dataclasses

    from napari_lesionseg.evaluation.lesion_size import drop_small_lesions

    return dataclasses.replace(result, mask=drop_small_lesions(result.mask, subject.geometry.spacing, min_mm3))


def _write(subject: Subject, result: InferenceResult, targets: list[tuple[str, Path]]) -> list[Path]:
    """Write all of a subject's outputs to temporary files, then rename them into place together."""
    import contextlib

    import nibabel as nib
    import numpy as np

    from napari_lesionseg._files import atomic_path
    from napari_lesionseg.cli import hold_sigterm
    from napari_lesionseg.data.volumes import volume_image

    arrays = {
        "prob": (result.probability, np.float32),
        "mask": (result.mask.astype(np.uint8), np.uint8),
        "uncertainty": (result.uncertainty, np.float32),
    }
    with contextlib.ExitStack() as stack:
        hold = stack.enter_context(hold_sigterm())  # entered first, so it ends after every rename
        for kind, path in targets:
            data, dtype = arrays[kind]
            image = volume_image(data, subject.geometry, dtype=dtype, name=str(path))
            nib.save(image, str(stack.enter_context(atomic_path(path))))
        hold.start()  # all written: a SIGTERM now waits until they are all in place, not some of them
    return [path for _, path in targets]


def _checkpoint_line(subject: Subject, metadata: Any) -> str:
    """Which network runs, and which of its optional inputs this subject lacks."""
    have = {m.casefold() for m in subject.modalities}
    absent = [m for m in metadata.optional_modalities if m.casefold() not in have]
    without = f" (without {', '.join(absent)}: optional, fed as background)" if absent else ""
    return f"{subject.name}: checkpoint {metadata.name}{without}"


def _summary(subject: Subject, result: InferenceResult, written: list[Path]) -> str:
    from napari_lesionseg.evaluation.lesion_size import mask_volume_ml

    ml = mask_volume_ml(result.mask, subject.geometry.spacing)
    seconds = sum(result.timings.get(stage, 0.0) for stage in ("total", "normalisation", "resample"))
    files = ", ".join(str(p) for p in written)
    space = result.model_space
    where = f" ({space.describe()})" if space is not None and space.resampled else ""
    patches = f"{result.total} patches ({result.skipped} background, skipped) on {result.device} ({result.precision})"
    return f"{subject.name}: {patches} in {seconds:.1f} s{where}, lesion volume {ml:.2f} ml -> {files}"


def _check_outputs(outputs: _Outputs, n_subjects: int) -> None:
    given = [p for p in (outputs.prob, outputs.mask, outputs.uncertainty) if p is not None]
    if not given:
        raise InvalidInputError("nothing to write: give --prob-out, --mask-out and/or --uncertainty-out")
    if n_subjects > 1:
        fixed = [p for p in given if _PLACEHOLDER not in p]
        if fixed:
            raise InvalidInputError(
                f"{n_subjects} subjects would all be written to {fixed[0]}; put {_PLACEHOLDER} in the output "
                f"paths, e.g. out/{_PLACEHOLDER}_mask.nii.gz"
            )


def _shard(shard: str | None) -> tuple[int, int]:
    """This process's (rank, world size): from --shard K/N, else torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if shard is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        rank, world = (int(part) for part in shard.split("/"))
    except ValueError:
        raise InvalidInputError(f"--shard must look like K/N (e.g. 0/4), got {shard!r}") from None
    if not 0 <= rank < world:
        raise InvalidInputError(f"--shard {shard}: K must be in 0..N-1")
    return rank, world
