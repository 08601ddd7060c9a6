"""`lesionseg sample OUT_DIR`: write synthetic MS subjects (MNI152 phantoms) to a folder.

Before anything is made, the subject folders are checked (`data.outputs`): an existing file is
replaced only if napari-lesionseg wrote it and it holds the same phantom (seed and spacing), and a
subject folder holding corrections of an earlier phantom is refused, since they would sit stale
beside the new one; ``--overwrite`` replaces the files and deletes those corrections.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_lesionseg.errors import InvalidInputError

if TYPE_CHECKING:
    from napari_lesionseg.data.phantom import Phantom

__all__ = ["register"]

#: The lesion load categories of napari_lesionseg.data.phantom.LESION_LOADS (not imported: it pulls numpy).
_LOADS = ("very_low", "low", "medium", "high")
#: The scanners of napari_lesionseg.data.phantom.contrast.CONTRAST_PROFILES (tested to match).
CONTRASTS = ("default", "low", "soft")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `sample` subcommand."""
    parser = subparsers.add_parser(
        "sample",
        help="write synthetic MS subjects (FLAIR, T1w, T2w, PDw + lesion mask)",
        description=(
            "Write N phantom subjects made from the MNI152 template (needs nilearn: "
            "pip install napari-lesionseg[phantom]). Subject i uses seed SEED + i - 1; "
            "the bundled sample data is `lesionseg sample OUT_DIR --n 3 --seed 9001 --dtype int16`. "
            "A clinical mixed protocol: --spacing 1 --slice-thickness 3 --thick FLAIR,T2w,PDw."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder that receives one sub-folder per subject")
    parser.add_argument("--n", type=int, default=1, help="number of subjects (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first subject (default: 0)")
    parser.add_argument("--spacing", type=float, default=2.0, metavar="MM", help="voxel size in mm (default: 2)")
    parser.add_argument(
        "--load",
        choices=_LOADS,
        default=None,
        help="lesion load of every subject (default: cycles through the loads with the seed)",
    )
    parser.add_argument("--t1c", action="store_true", help="also write a gadolinium-enhanced T1 (T1c)")
    parser.add_argument(
        "--dtype",
        choices=("int16", "float32"),
        default=None,
        help="image dtype of every subject (default: each subject's scanner chooses, mostly int16)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing subject files and delete the corrections saved for the subjects replaced",
    )
    parser.add_argument(
        "--generator", choices=("phantom", "training"), default="phantom",
        help="phantom: the sample data's subjects, as the options below describe; training: the randomised "
        "training generator (data/phantom/randomized.py), which draws contrasts, acquisition, skull, modalities "
        "and lesions per subject (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--modalities", metavar="LIST", help="with --generator training: write exactly these (e.g. FLAIR,T1w); default: drawn"
    )
    acquisition = parser.add_argument_group("acquisition")
    acquisition.add_argument("--skull-strip", action="store_true", help="set everything outside the brain to 0")
    acquisition.add_argument(
        "--slice-thickness", type=float, metavar="MM",
        help="2-D acquisition: slices MM thick (a whole multiple of --spacing), the mean of the fine slices they span",
    )  # fmt: skip
    acquisition.add_argument("--slice-axis", choices=("axial", "coronal", "sagittal"), default="axial", help="slice orientation (default: %(default)s)")
    acquisition.add_argument(
        "--thick", metavar="LIST",
        help="comma-separated modalities with thick slices (default: all; e.g. FLAIR,T2w,PDw beside a 3-D T1w)",
    )  # fmt: skip
    acquisition.add_argument(
        "--contrast",
        choices=CONTRASTS,
        default="default",
        help="the scanner: default; low (a second scanner: lower lesion-to-grey-matter contrast on FLAIR, "
        "flatter T1w, more noise); soft (fainter lesions everywhere, stronger bias field). The same seed gives "
        "the same head and lesions on every scanner (default: %(default)s)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_lesionseg.data.phantom import write_phantoms
    from napari_lesionseg.data.phantom.subject import check_spacing

    check_spacing(args.spacing)
    if args.n >= 1:
        _prepare(Path(args.out_dir), args.n, t1c=args.t1c, overwrite=args.overwrite)
        if not args.overwrite:
            _refuse_other_phantoms(Path(args.out_dir), args.n, args.seed, args.spacing)

    def report(folder: Path, phantom: Phantom) -> None:
        load = phantom.lesion_load
        print(f"{folder}  seed {phantom.seed}  {load.n_lesions} lesions  {load.volume_ml:.2f} mL ({load.category})")

    if args.generator == "training":
        _write_training_subjects(args, report)
        return 0
    if args.modalities:
        raise InvalidInputError("--modalities needs --generator training (the phantom always writes FLAIR, T1w, T2w, PDw)")
    write_phantoms(
        args.out_dir,
        args.n,
        args.seed,
        args.spacing,
        lesion_load=args.load,
        t1c=args.t1c,
        dtype=args.dtype,
        contrast=args.contrast,
        on_subject=report,
        acquisition={
            "skull_strip_images": args.skull_strip,
            "slice_thickness": args.slice_thickness,
            "slice_axis": args.slice_axis,
            "thick": None if not args.thick else [m.strip() for m in args.thick.split(",") if m.strip()],
        },
    )
    return 0


def _write_training_subjects(args: argparse.Namespace, report: Any) -> None:
    """`--generator training`: subject i is `make_training_subject(seed + i - 1)`, written as sub-phantom<i>."""
    from napari_lesionseg.data.phantom import make_training_subject, write_phantom
    from napari_lesionseg.data.phantom.writer import subject_name

    fixed = {"--load": args.load, "--t1c": args.t1c, "--skull-strip": args.skull_strip,
             "--slice-thickness": args.slice_thickness, "--thick": args.thick,
             "--contrast": args.contrast != "default"}  # fmt: skip
    given = [flag for flag, value in fixed.items() if value]
    if given:
        raise InvalidInputError(f"{', '.join(given)}: the training generator draws these per subject; leave them out")
    modalities = None if not args.modalities else [m.strip() for m in args.modalities.split(",") if m.strip()]
    for index in range(1, args.n + 1):
        phantom = make_training_subject(args.seed + index - 1, args.spacing, modalities=modalities)
        report(write_phantom(phantom, args.out_dir, subject_name(index), args.dtype), phantom)


def _prepare(out_dir: Path, n: int, *, t1c: bool, overwrite: bool) -> None:
    """Check every file to write against the output policy; refuse (or, with overwrite, delete) stale corrections."""
    from napari_lesionseg.constants import CORE_MODALITIES, MASK_SUFFIX
    from napari_lesionseg.data.corrections import corrected_mask_files
    from napari_lesionseg.data.outputs import Output, check_outputs
    from napari_lesionseg.data.phantom.writer import subject_name

    roles = (*CORE_MODALITIES, *(("T1c",) if t1c else ()), MASK_SUFFIX)
    outputs = [Output(out_dir, "OUT_DIR", "folder")]
    stale: list[Path] = []
    for index in range(1, n + 1):
        name = subject_name(index)
        folder = out_dir / name
        outputs += [Output(folder / f"{name}_{role}.nii.gz", f"subject {name}", role_name_ok=True) for role in roles]
        stale += corrected_mask_files(folder, name) if folder.is_dir() else []
    if stale and not overwrite:
        raise InvalidInputError(
            f"{stale[0]}: corrections of the subject written there before; a new phantom would leave them stale beside "
            f"it ({len(stale)} file(s)). Choose another OUT_DIR, or pass --overwrite to delete them"
        )
    check_outputs(outputs, overwrite=overwrite)
    for path in stale:
        path.unlink()
        print(f"deleted stale corrections {path}", file=sys.stderr)


def _refuse_other_phantoms(out_dir: Path, n: int, seed: int, spacing: float) -> None:
    """Refuse to write over another phantom (other seed or spacing): its files may be in use as someone's data."""
    from napari_lesionseg.data.phantom.writer import subject_name, written_phantom

    for index in range(1, n + 1):
        name = subject_name(index)
        expected = (seed + index - 1, float(spacing))
        for path in sorted((out_dir / name).glob(f"{name}_*.nii.gz")):
            found = written_phantom(path)
            if found is not None and found != expected:
                raise InvalidInputError(
                    f"{path}: holds another phantom (seed {found[0]}, {found[1]:g} mm) where this run writes seed "
                    f"{expected[0]} at {spacing:g} mm; choose another OUT_DIR, or pass --overwrite to replace it"
                )
