"""`lesionseg checkpoints [--json]`: list the user and bundled checkpoints."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `checkpoints` subcommand."""
    parser = subparsers.add_parser(
        "checkpoints",
        help="list the bundled and user checkpoints",
        description="List the checkpoints `lesionseg predict` and the napari widgets can use: the user's "
        "fine-tunes ($LESIONSEG_HOME/checkpoints or the XDG data folder) first, then the bundled ones.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the checkpoints as a table or as JSON."""
    from napari_lesionseg.engine.checkpoints import BUNDLED_DIR, list_checkpoints, user_checkpoint_dir

    rows = [_row(info) for info in list_checkpoints()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if rows:
        print(_table(rows))
    else:
        print("no checkpoints found")
    print(f"\nuser checkpoints: {user_checkpoint_dir()}\nbundled checkpoints: {BUNDLED_DIR}")
    return 0


def _row(info: Any) -> dict[str, Any]:
    metadata = info.metadata
    return {
        "name": info.name,
        "source": info.source,
        "architecture": metadata.model.get("architecture"),
        "loss": metadata.loss,
        "beta": metadata.beta,
        "modalities": list(metadata.modalities),
        "patch_size": list(metadata.patch_size),
        "dsc": _validation_dsc(metadata.validation),
        "parent": metadata.parent,
        "created": metadata.created,
        "path": str(info.path),
    }


def _validation_dsc(validation: dict[str, Any]) -> float | None:
    """The validation DSC: ``validation["dsc"]``, or the mean over subjects ``validation["mean"]["dsc"]``."""
    mean = validation.get("mean")
    for source in (validation, mean if isinstance(mean, dict) else {}):
        if isinstance(source.get("dsc"), (int, float)):
            return float(source["dsc"])
    return None


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["name", "source", "loss", "beta", "modalities", "patch", "val. DSC"]
    lines = [
        [
            row["name"],
            row["source"],
            row["loss"],
            "-" if row["beta"] is None else f"{row['beta']:g}",
            ",".join(row["modalities"]),
            "x".join(map(str, row["patch_size"])),
            "-" if row["dsc"] is None else f"{row['dsc']:.3f}",
        ]
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *lines])
