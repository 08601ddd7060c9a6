"""`lesionseg checkpoints [--json]`: list the user and bundled checkpoints, and the unusable files with why.

A file that is corrupt, foreign or holds NaN/Inf weights is listed as unusable (JSON: ``"usable":
false`` and ``"problem"``); usable rows have ``"usable": true`` and ``"problem": null``.
"""

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
    from napari_lesionseg.engine.checkpoints import BUNDLED_DIR, scan_checkpoints, user_checkpoint_dir

    found, bad = scan_checkpoints()
    rows = [_row(info) for info in found]
    if args.json:
        print(json.dumps(rows + [_bad_row(item) for item in bad], indent=2))
        return 0
    if rows:
        print(_table(rows))
    else:
        print("no checkpoints found")
    for item in bad:
        print(f"unusable: {item.name} ({item.source}): {item.problem}")
    print(f"\nuser checkpoints: {user_checkpoint_dir()}\nbundled checkpoints: {BUNDLED_DIR}")
    return 0


def _row(info: Any) -> dict[str, Any]:
    from napari_lesionseg.engine.requirements import required_modalities, trained_spacing

    metadata = info.metadata
    spacing = trained_spacing(metadata)
    return {
        "name": info.name,
        "source": info.source,
        "architecture": metadata.model.get("architecture"),
        "loss": metadata.loss,
        "beta": metadata.beta,
        "modalities": list(metadata.modalities),
        "required": required_modalities(metadata),
        "optional": list(metadata.optional_modalities),
        "spacing": None if spacing is None else list(spacing),
        "patch_size": list(metadata.patch_size),
        "dsc": _validation_dsc(metadata.validation),
        "parent": metadata.parent,
        "created": metadata.created,
        "path": str(info.path),
        "usable": True,
        "problem": None,
    }


def _bad_row(item: Any) -> dict[str, Any]:
    keys = ("architecture", "loss", "beta", "modalities", "patch_size", "dsc", "parent", "created")
    return {"name": item.name, "source": item.source, **dict.fromkeys(keys), "path": str(item.path), "usable": False, "problem": item.problem}


def _validation_dsc(validation: dict[str, Any]) -> float | None:
    """The validation DSC: ``validation["dsc"]``, or the mean over subjects ``validation["mean"]["dsc"]``."""
    mean = validation.get("mean")
    for source in (validation, mean if isinstance(mean, dict) else {}):
        if isinstance(source.get("dsc"), (int, float)):
            return float(source["dsc"])
    return None


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["name", "source", "loss", "beta", "needs", "optional", "mm", "patch", "val. DSC"]
    lines = [
        [
            row["name"],
            row["source"],
            row["loss"],
            "-" if row["beta"] is None else f"{row['beta']:g}",
            ",".join(row["required"]),
            ",".join(row["optional"]) or "-",
            "?" if row["spacing"] is None else "x".join(f"{v:g}" for v in row["spacing"]),
            "x".join(map(str, row["patch_size"])),
            "-" if row["dsc"] is None else f"{row['dsc']:.3f}",
        ]
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *lines])
