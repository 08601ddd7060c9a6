"""Operating-system faults in a real `lesionseg` process: one line naming the path and the problem,
exit status 2 (143 for SIGTERM), inputs untouched, no temporary file left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _faults import assert_untouched, snapshot, temp_files
from conftest import write_nifti, write_subject

import napari_lesionseg
from napari_lesionseg.cli import main, os_error_line

ROOT = Path(napari_lesionseg.__file__).parent.parent
SHAPE = (12, 10, 8)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _cases(tmp_path: Path, n: int = 3) -> None:
    rng = np.random.default_rng(1)
    for i in range(1, n + 1):
        gt = (rng.random(SHAPE) < 0.1).astype(np.uint8)
        write_nifti(tmp_path / "out" / f"sub-0{i}_mask.nii.gz", np.roll(gt, i, axis=1))
        write_nifti(tmp_path / "data" / f"sub-0{i}" / f"sub-0{i}_label-lesion_mask.nii.gz", gt)


def test_evaluate_into_a_closed_pipe_is_one_line_not_a_traceback(tmp_path):
    _cases(tmp_path)
    before = snapshot(tmp_path)
    argv = ["evaluate", "--pred-dir", str(tmp_path / "out"), "--gt-dir", str(tmp_path / "data"), "--quiet"]
    child = subprocess.Popen(
        [sys.executable, "-m", "napari_lesionseg.cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True,
    )  # fmt: skip
    child.stdout.close()  # `| head` that has already exited: every write to stdout fails
    err = child.stderr.read()
    assert child.wait(timeout=120) == 2
    lines = err.strip().splitlines()
    assert lines == ["lesionseg evaluate: error: stdout: the reading end of the pipe was closed (e.g. by head); output stopped"]
    assert_untouched(before, tmp_path)


_SIGTERM_CHILD = r"""
import os, sys, time
from napari_lesionseg.cli import main

fsync = os.fsync

def stall(fd):
    if ".lesions.csv." in os.readlink(f"/proc/self/fd/{fd}"):  # the CSV's temporary file, not the probe
        print("writing", file=sys.stderr, flush=True)
        time.sleep(120)
    fsync(fd)

os.fsync = stall
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path):
    _cases(tmp_path, n=1)
    before = snapshot(tmp_path)
    out = tmp_path / "report" / "lesions.csv"
    argv = ["evaluate", "--pred", str(tmp_path / "out" / "sub-01_mask.nii.gz"), "--gt",
            str(tmp_path / "data" / "sub-01" / "sub-01_label-lesion_mask.nii.gz"), "--lesions", str(out)]  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", _SIGTERM_CHILD, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), text=True
    )
    assert child.stderr.readline().strip() == "writing"
    assert [p.name.startswith(".lesions.csv.") for p in temp_files(out.parent)] == [True]  # mid-write
    child.send_signal(signal.SIGTERM)
    rest = child.stderr.read()
    assert child.wait(timeout=60) == 143
    assert "lesionseg evaluate: terminated" in rest and "Traceback" not in rest
    assert not out.exists() and temp_files(tmp_path) == []
    assert_untouched(before, tmp_path)


_SIGTERM_AT_RENAME_CHILD = r"""
import os, signal, sys
from napari_lesionseg.cli import main

replace = os.replace

def replace_then_terminate(src, dst):
    replace(src, dst)
    if str(dst).endswith("_mask.nii.gz"):  # the first of the subject's outputs in place: stop now
        os.kill(os.getpid(), signal.SIGTERM)

os.replace = replace_then_terminate
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_between_a_subjects_renames_still_lands_all_its_outputs(tmp_path):
    """A subject's outputs go into place together: a SIGTERM after the first rename waits for the others."""
    folder = write_subject(tmp_path / "data", shape=(16, 16, 16))
    mask, prob = tmp_path / "out" / "sub-01_mask.nii.gz", tmp_path / "out" / "sub-01_prob.nii.gz"
    argv = ["predict", str(folder), "--beta", "1.5", "--no-tta", "--device", "cpu", "--quiet",
            "--prob-out", str(prob), "--mask-out", str(mask)]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _SIGTERM_AT_RENAME_CHILD, *argv], capture_output=True, text=True,
                          env=_env(), timeout=300, check=False)  # fmt: skip
    assert done.returncode == 143 and "lesionseg predict: terminated" in done.stderr, done.stderr
    assert mask.is_file() and prob.is_file() and temp_files(tmp_path / "out") == []


def test_a_volume_too_large_for_the_address_space_limit_names_the_file(tmp_path):
    big = write_nifti(tmp_path / "big_FLAIR.nii", np.zeros((256, 256, 256), np.float32))
    before = snapshot(tmp_path)
    script = (
        "import resource, sys\n"
        "from napari_lesionseg import _memory\n"
        "used = _memory._address_space_used()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 150 * 2**20, resource.RLIM_INFINITY))\n"  # ulimit -v
        "from napari_lesionseg.errors import LesionSegError\n"
        "from napari_lesionseg.data.volumes import load_volume\n"
        "try:\n    load_volume(sys.argv[1])\nexcept LesionSegError as err:\n    print(err)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(big)], capture_output=True, text=True, env=_env(), timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{big}: reading its 256x256x256 voxels needs about") and "MemoryError" not in result.stderr
    assert_untouched(before, tmp_path)


@pytest.mark.parametrize(
    ("err", "line"),
    [
        (PermissionError(13, "Permission denied", "/data/out.csv"), "/data/out.csv: permission denied"),
        (OSError(28, "No space left on device", "/data/m.nii.gz"), "/data/m.nii.gz: no space left on the disk"),
        (NotADirectoryError(20, "Not a directory", "/data/file/x"), "/data/file/x: a part of the path is a file, not a folder"),
        (OSError(30, "Read-only file system", "/a", None, "/b"), "/a -> /b: read-only file system"),
    ],
)
def test_os_errors_read_as_one_line_with_the_path(err, line):
    assert os_error_line(err) == line


def test_an_os_error_inside_a_command_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    _cases(tmp_path, n=1)
    before = snapshot(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / "sub-01_mask.nii.gz"))

    monkeypatch.setattr("nibabel.load", denied)  # an input that cannot be opened after all the checks
    code = main(["evaluate", "--pred-dir", str(tmp_path / "out"), "--gt-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "sub-01_mask.nii.gz" in err[0]
    assert_untouched(before, tmp_path)
