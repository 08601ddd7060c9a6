"""Faults for data-safety tests: read-only folders, full disks, snapshots of the input files.

Tests may run as root, where ``chmod`` does not stop writes; `make_read_only` detects that and
refuses the writes by patching the calls that create files in the folder instead.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest


def snapshot(*roots: Path) -> dict[Path, bytes]:
    """Every file under `roots` with its bytes (compare before and after a run)."""
    files: dict[Path, bytes] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files.update({p: p.read_bytes() for p in paths})
    return files


def temp_files(*roots: Path) -> list[Path]:
    """Hidden temporary files left under `roots`."""
    return [p for root in roots if root.is_dir() for p in root.rglob(".*") if p.is_file()]


def make_read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every file creation in `folder` fail as on a read-only disk."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        return  # chmod does the work (pytest's clean-up of tmp_path restores permissions)
    probe.unlink()
    folder.chmod(0o755)  # root: chmod does not stop writes, refuse them where files are created
    refuse_writes_in(folder, monkeypatch, errno.EROFS)


def refuse_writes_in(folder: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Make temporary-file creation (every write of the program goes through one) fail in `folder` with `code`."""
    real = tempfile.mkstemp
    inside = folder.resolve()

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(inside):
            raise OSError(code, os.strerror(code), os.fspath(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def fail_fsync(monkeypatch: pytest.MonkeyPatch, when: Callable[[str], bool], code: int = errno.ENOSPC) -> list[str]:
    """Make `os.fsync` fail with `code` for files whose path satisfies `when` (a disk that fills up); returns the paths failed."""
    real = os.fsync
    failed: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if when(path):
            failed.append(path)
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def assert_untouched(before: dict[Path, bytes], *roots: Iterable[Path]) -> None:
    """The files of `before` are byte-identical and no temporary file is left."""
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} changed"
    leftovers = temp_files(*{p.parent for p in before}, *(Path(r) for r in roots))
    assert leftovers == [], f"temporary files left: {leftovers}"
