"""The `lesionseg` command line: one module per subcommand, each with a `register(subparsers)`.

Subcommand modules import the engine lazily inside their handlers so that `lesionseg --help`
stays fast (torch takes seconds to import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_lesionseg import __version__
from napari_lesionseg.errors import LesionSegError

#: Subcommand modules in `napari_lesionseg.cli`, in the order `--help` lists them.
SUBCOMMANDS: tuple[str, ...] = ("sample", "checkpoints", "predict", "evaluate", "train", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionseg",
        description="MS lesion segmentation: sample data, prediction, evaluation, training.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"napari_lesionseg.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lesionseg`; user errors print one clear line and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LesionSegError as err:
        print(f"lesionseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lesionseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
