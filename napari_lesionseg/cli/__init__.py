"""The `lesionseg` command line: one module per subcommand, each with a `register(subparsers)`.

Subcommand modules import the engine lazily inside their handlers so that `lesionseg --help`
stays fast (torch takes seconds to import).

`main` turns every failure a user can act on into one line on stderr and exit status 2: our own
errors (`LesionSegError`), operating-system errors (permission, disk full, not a folder...) with the
path, running out of memory, and a closed stdout (``lesionseg evaluate ... | head``). Warnings are
printed as one line each. SIGTERM unwinds like Ctrl-C, so an interrupted write removes its
temporary file.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from napari_lesionseg import __version__
from napari_lesionseg.errors import LesionSegError

#: Subcommand modules in `napari_lesionseg.cli`, in the order `--help` lists them.
SUBCOMMANDS: tuple[str, ...] = ("sample", "checkpoints", "predict", "evaluate", "train", "finetune", "bench")


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (argparse prints the whole usage block first)."""

    _given: Sequence[str] = ()

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> Any:
        message = _with_dash_hint(message, self._given)
        with contextlib.suppress(OSError):
            print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


_MISSING_VALUE = re.compile(r"^argument (?P<option>--[\w-]+): expected one argument$")


def _with_dash_hint(message: str, given: Sequence[str]) -> str:
    """argparse takes a value such as ``-1/2`` for an option; say how to pass it (``--shard=-1/2``)."""
    missing = _MISSING_VALUE.match(message)
    option = missing["option"] if missing else None
    values = [after for before, after in zip(given, given[1:]) if before == option]
    if not any(value[:1] == "-" and value[1:2].isdigit() for value in values):
        return message
    return f"{message}; a value that starts with '-' is written {option}=VALUE"


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="lesionseg",
        description="MS lesion segmentation: sample data, prediction, evaluation, training.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"napari_lesionseg.cli.{name}").register(subparsers)
    return parser


#: Plain words for the OS errors users meet when writing (strerror is terser).
_OS_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
}


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that `finally` blocks (temporary files) run."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lesionseg`; user errors print one clear line and exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    prefix = f"lesionseg {args.command}"
    try:
        with _one_line_warnings(prefix), _sigterm_unwinds():
            code = int(args.func(args) or 0)
            sys.stdout.flush()
            return code
    except LesionSegError as err:
        return _fail(prefix, str(err))
    except BrokenPipeError:
        _silence_stdout()
        return _fail(prefix, "stdout: the reading end of the pipe was closed (e.g. by head); output stopped")
    except OSError as err:
        return _fail(prefix, os_error_line(err))
    except MemoryError:
        return _fail(prefix, "out of memory; use smaller volumes or patches (--patch-size), fewer patches per batch, or free memory")
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prefix}: terminated", file=sys.stderr)
        return 143


def os_error_line(err: OSError) -> str:
    """``PATH: problem`` for an OS error (both paths for a rename)."""
    reason = _OS_REASONS.get(err.errno or 0) or (err.strerror or str(err)).lower()
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _fail(prefix: str, message: str) -> int:
    with contextlib.suppress(OSError):
        print(f"{prefix}: error: {message}", file=sys.stderr)
    return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not raise again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def _one_line_warnings(prefix: str) -> Iterator[None]:
    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(OSError):
            print(f"{prefix}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class SigtermHold:
    """Once `start`ed, a SIGTERM waits until the block ends, then unwinds as usual (see `hold_sigterm`)."""

    def __init__(self) -> None:
        self.held = False
        self._previous: Any = None

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGTERM, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.held = True

    def end(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        if self.held:
            raise Terminated


@contextlib.contextmanager
def hold_sigterm() -> Iterator[SigtermHold]:
    """A block whose last steps a SIGTERM does not split: ``hold.start()`` before renaming a set of files into place.

    Before `start` a SIGTERM unwinds at once (temporary files are removed); after it, the block
    finishes (every file renamed) and the termination follows.
    """
    hold = SigtermHold()
    try:
        yield hold
    finally:
        hold.end()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
