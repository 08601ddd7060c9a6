"""`lesionseg sample OUT_DIR`: write synthetic MS subjects (MNI152 phantoms) to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_lesionseg.data.phantom import Phantom

__all__ = ["register"]

#: The lesion load categories of napari_lesionseg.data.phantom.LESION_LOADS (not imported: it pulls numpy).
_LOADS = ("very_low", "low", "medium", "high")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `sample` subcommand."""
    parser = subparsers.add_parser(
        "sample",
        help="write synthetic MS subjects (FLAIR, T1w, T2w, PDw + lesion mask)",
        description=(
            "Write N phantom subjects made from the MNI152 template (needs nilearn: "
            "pip install napari-lesionseg[phantom]). Subject i uses seed SEED + i - 1; "
            "the bundled sample data is `lesionseg sample OUT_DIR --n 3 --seed 9001 --dtype int16`."
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
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_lesionseg.data.phantom import write_phantoms

    def report(folder: Path, phantom: Phantom) -> None:
        load = phantom.lesion_load
        print(f"{folder}  seed {phantom.seed}  {load.n_lesions} lesions  {load.volume_ml:.2f} mL ({load.category})")

    write_phantoms(
        args.out_dir,
        args.n,
        args.seed,
        args.spacing,
        lesion_load=args.load,
        t1c=args.t1c,
        dtype=args.dtype,
        on_subject=report,
    )
    return 0
