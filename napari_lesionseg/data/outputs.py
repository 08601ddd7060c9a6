"""The output-path policy: every command (and any dock that writes) checks its outputs here, before any work.

1. An output never is an input of the run, nor another output of it: paths are compared after
   resolving links (and by inode, for hard links and case-insensitive names).
2. A NIfTI output is never named like a subject file the reader takes as an input
   (``*_FLAIR``, ``*_T1w``..., ``*_label-lesion_mask``, ``*_label-lesion_corrected``; see `naming`).
3. An existing file is replaced only if this program wrote it and it is not write-protected, or
   with ``--overwrite``; it is always replaced atomically (`napari_lesionseg._files`). This program's own outputs are
   recognised by their content: a NIfTI header whose description starts with
   ``napari-lesionseg`` (`volumes.OUTPUT_DESCRIP`), a CSV whose header row is the one the command
   writes, a checkpoint archive carrying the ``napari-lesionseg-checkpoint`` marker.
4. The target folders are created and probed with a small temporary file, so a read-only or full
   disk, or a path under a regular file, is reported before minutes of work.
5. Batch names are unique: when a ``{subject}`` template gives two subjects one path, the run stops
   before any work, naming both subjects.

Example:
    >>> check_outputs([Output(Path("out/sub-01_mask.nii.gz"), "--mask-out")], inputs=[flair])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nibabel.openers import ImageOpener

from napari_lesionseg.data.naming import is_nifti_path, role_of
from napari_lesionseg.data.volumes import OUTPUT_DESCRIP
from napari_lesionseg.errors import InvalidInputError

__all__ = [
    "SUBJECT_PLACEHOLDER", "Output", "OutputKind", "batch_outputs", "check_outputs", "is_own_output", "nifti_description",
]  # fmt: skip

OutputKind = Literal["nifti", "csv", "checkpoint", "folder", "file"]

#: Placeholder of batch output templates.
SUBJECT_PLACEHOLDER = "{subject}"
#: Marker string inside every checkpoint archive `engine.checkpoints.save_checkpoint` writes.
CHECKPOINT_MARKER = b"napari-lesionseg-checkpoint"
#: Less free space than this on an output's disk counts as full.
_MIN_FREE_BYTES = 1 << 20


@dataclass(frozen=True)
class Output:
    """One path a run will write.

    Attributes:
        path: the file (or folder, for kind ``"folder"``).
        label: how the user named it, for messages (``"--mask-out of sub-01"``).
        kind: what is written; decides how an earlier output of this program is recognised.
        csv_header: for kind ``"csv"``, the header row the command writes.
        role_name_ok: the output is a subject file on purpose (`lesionseg sample`).
    """

    path: Path
    label: str
    kind: OutputKind = "nifti"
    csv_header: str | None = None
    role_name_ok: bool = False


def check_outputs(
    outputs: Sequence[Output], inputs: Iterable[str | os.PathLike[str]] = (), *, overwrite: bool = False
) -> None:
    """Apply the policy to every output of a run, then create and probe their folders.

    Raises:
        InvalidInputError: an output is an input or another output, is named like a subject file,
            would replace a file this program did not write (without `overwrite`), or its folder
            cannot be created or written; the message names the path and the option.
    """
    input_keys: dict[tuple[object, ...], Path] = {}
    for given in inputs:
        for key in (_key(Path(given)), _inode(Path(given))):
            if key is not None:
                input_keys.setdefault(key, Path(given))
    for output in outputs:
        _check_not_input(output, input_keys)
        _check_name(output)
    _check_distinct(outputs)
    for output in outputs:
        _check_replaceable(output, overwrite)
    for folder, output in {_folder(o): o for o in outputs}.items():
        _prepare_folder(folder, output)


def batch_outputs(template: str, subjects: Sequence[tuple[str, Path]], label: str, kind: OutputKind = "nifti") -> list[Output]:
    """One output per subject from a ``{subject}`` template; stops when two subjects would share a path.

    Args:
        template: the path with ``{subject}``.
        subjects: ``(name, folder)`` of each subject, in run order.
        label: the option (``"--mask-out"``).
    """
    outputs: list[Output] = []
    seen: dict[tuple[object, ...], tuple[str, Path]] = {}
    for name, folder in subjects:
        path = Path(template.replace(SUBJECT_PLACEHOLDER, name))
        key = _key(path)
        if key in seen:
            other_name, other_folder = seen[key]
            raise InvalidInputError(
                f"{label} {template}: subjects {other_folder} and {folder} would both be written to {path} "
                f"(both are named {name!r}" + ("" if name == other_name else f" and {other_name!r}") + "); nothing was "
                "predicted. Run them separately with different output folders, or rename one subject's files."
            )
        seen[key] = (name, folder)
        outputs.append(Output(path, f"{label} of {name} ({folder})", kind))
    return outputs


def is_own_output(path: str | os.PathLike[str], kind: OutputKind = "nifti", csv_header: str | None = None) -> bool:
    """Whether the existing file `path` was written by this program (see the module docstring)."""
    path = Path(path)
    try:
        if kind == "nifti":
            return nifti_description(path).startswith(OUTPUT_DESCRIP)
        if kind == "csv":
            with open(path, encoding="utf-8", newline="") as handle:
                return csv_header is not None and handle.readline().rstrip("\r\n") == csv_header
        if kind == "checkpoint":
            return _is_checkpoint(path)
    except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile):
        return False
    return False


def _check_name(output: Output) -> None:
    if output.kind == "nifti" and not is_nifti_path(output.path):
        raise InvalidInputError(f"{output.label} {output.path}: not a NIfTI file name; end it in .nii.gz or .nii")
    role = role_of(output.path) if output.kind == "nifti" else None
    if role is not None and not output.role_name_ok:
        raise InvalidInputError(
            f"{output.label} {output.path}: named like a subject's {role} file, which the subject reader would "
            f"take for an input; choose another name (e.g. sub-01_mask.nii.gz or sub-01_prob.nii.gz)"
        )


def _check_not_input(output: Output, input_keys: dict[tuple[object, ...], Path]) -> None:
    source = input_keys.get(_key(output.path)) or input_keys.get(_inode(output.path))
    if source is not None:
        same = Path(os.path.abspath(source)) == Path(os.path.abspath(output.path))
        what = "is the input file itself" if same else f"leads to the input {source} (a link or another name for it)"
        raise InvalidInputError(
            f"{output.path} (given as {output.label}) {what}; inputs are never overwritten: choose another output path"
        )


def _check_distinct(outputs: Sequence[Output]) -> None:
    seen: dict[tuple[object, ...], Output] = {}
    for output in outputs:
        for key in {_key(output.path), _inode(output.path)}:
            if key is not None and key in seen and seen[key] is not output:
                raise InvalidInputError(
                    f"{seen[key].label} and {output.label} both write {output.path}; give each output its own path"
                )
            if key is not None:
                seen[key] = output


def _check_replaceable(output: Output, overwrite: bool) -> None:
    path = output.path
    if output.kind == "folder":
        if path.exists() and not path.is_dir():
            raise InvalidInputError(f"{output.label} {path}: is a file, not a folder")
        return
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        raise InvalidInputError(f"{output.label} {path}: is a folder; give a file name")
    if not path.is_file():
        raise InvalidInputError(f"{output.label} {path}: exists and is not a regular file")
    if overwrite:
        return
    # Only a command-line option has --overwrite beside it; a dock's "Save as" does not.
    hint = "pass --overwrite to replace it, or choose another path" if output.label.startswith("--") else "choose another path"
    if not is_own_output(path, output.kind, output.csv_header):
        raise InvalidInputError(f"{output.label} {path}: exists and was not written by napari-lesionseg; {hint}")
    if _write_protected(path):  # an earlier result its owner protected (chmod a-w): a rename would replace it anyway
        raise InvalidInputError(f"{output.label} {path}: exists and is read-only (write-protected); {hint}")


def _write_protected(path: Path) -> bool:
    try:
        return not os.stat(path).st_mode & 0o222
    except OSError:
        return False


def _prepare_folder(folder: Path, output: Output) -> None:
    """Create `folder` and write and remove a small probe file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise InvalidInputError(
            f"{output.label} {output.path}: cannot create the folder {folder}: {blocker} is a file, not a folder"
        ) from None
    except OSError as err:
        raise InvalidInputError(f"{output.label} {output.path}: cannot create the folder {folder}: {_reason(err)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=f".lesionseg-probe.{os.getpid()}.", suffix=".tmp", dir=folder)
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise InvalidInputError(f"{output.label} {output.path}: cannot write in {folder}: {_reason(err)}") from None
    if free < _MIN_FREE_BYTES:
        raise InvalidInputError(f"{output.label} {output.path}: the disk holding {folder} is full ({free} bytes free)")


def _folder(output: Output) -> Path:
    return output.path if output.kind == "folder" else output.path.parent


def _key(path: Path) -> tuple[object, ...]:
    """The absolute path with links resolved (case-folded on Windows; elsewhere `_inode` catches case aliases)."""
    resolved = Path(os.path.realpath(path))
    return ("path", os.path.normcase(str(resolved)))


def _inode(path: Path) -> tuple[object, ...] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return ("inode", stat.st_dev, stat.st_ino)


def nifti_description(path: Path) -> bytes:
    """The header ``descrip`` of a NIfTI file, read without its voxels; empty for a foreign or damaged file."""
    import nibabel as nib

    try:
        with ImageOpener(str(path)) as handle:
            block = handle.read(540)
    except (OSError, EOFError, ValueError):  # unreadable, or a damaged gzip stream
        return b""
    for header_class in (nib.Nifti1Header, nib.Nifti2Header):
        try:
            header = header_class(block[: header_class.template_dtype.itemsize], check=False)
        except Exception:  # noqa: BLE001, S112 (a foreign or damaged file is simply not ours)
            continue
        if header["magic"].item() in (b"n+1", b"n+2"):
            return bytes(header["descrip"].item()).rstrip(b"\0")
    return b""


def _is_checkpoint(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        return bool(pickles) and CHECKPOINT_MARKER in archive.read(pickles[0])


def _reason(err: OSError) -> str:
    return (err.strerror or str(err)).lower()
