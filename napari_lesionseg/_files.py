"""Atomic file writes: a temporary file in the target folder, flushed, then renamed over the target.

An interrupted write leaves the previous file (or nothing) in place, never a truncated one. The
temporary file is hidden (``.<name>.<pid>.<random>.tmp<suffixes>``) and removed when the write fails
or is interrupted by an exception (the CLI turns SIGTERM into one); the temporary files of a
process that was killed outright are removed later by `clean_stale_temps`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "clean_stale_temps", "named_os_error", "write_bytes_atomic", "write_text_atomic"]

# mkstemp creates files readable by their owner only; written files should get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

#: A temporary file without a live owner process older than this is stale (its writer is gone).
_STALE_AFTER_S = 3600.0


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temporary name keeps the target's suffixes (``.nii.gz``, ``.pt``...) so that libraries which
    choose a format from the file name write the right one. OS errors about the temporary file
    (permission, disk full...) are raised naming `target`, the file the user asked for.
    """
    target = Path(target)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=f".tmp{''.join(target.suffixes)}", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except OSError as err:
        if err.filename is None or (tmp is not None and str(err.filename) == str(tmp)):
            raise named_os_error(err, target) from err
        raise
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def named_os_error(err: OSError, path: str | os.PathLike[str]) -> OSError:
    """The same OS error (same errno, so the same subclass) naming `path`."""
    return OSError(err.errno, err.strerror or str(err), str(path))


def clean_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files an interrupted write of `target` left behind; return those removed.

    A temporary file is stale when the process that created it is gone (or, for a name without a
    process id, when it is older than an hour); a write in progress, in this process or another, is
    left alone.
    """
    target = Path(target)
    prefix = f".{target.name}."
    removed = []
    for name in glob.glob(glob.escape(str(target.parent / prefix)) + "*.tmp*"):
        path = Path(name)
        if _is_stale(path, path.name[len(prefix) :].split(".", 1)[0]):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def write_bytes_atomic(target: str | os.PathLike[str], payload: bytes) -> Path:
    """Write `payload` to `target` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return Path(target)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 `text` to `target` atomically and return the target path."""
    return write_bytes_atomic(target, text.encode("utf-8"))


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _is_stale(path: Path, owner: str) -> bool:
    if owner.isdigit():
        return not _alive(int(owner))
    try:
        return time.time() - path.stat().st_mtime > _STALE_AFTER_S
    except FileNotFoundError:
        return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
