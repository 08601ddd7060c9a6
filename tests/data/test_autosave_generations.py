"""Autosave generations on disk: the last good corrections survive a kill at any point of a write,
and what reopening offers (`find_corrected_mask`, the function the Lesion review dock calls) is the
newest readable generation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import napari_lesionseg
from napari_lesionseg.data.corrections import (
    corrected_mask_path,
    find_corrected_mask,
    load_corrected_mask,
    previous_path,
    save_corrected_mask,
)
from napari_lesionseg.data.subject import load_subject

ROOT = Path(napari_lesionseg.__file__).parent.parent

# The child stalls at its N-th fsync: 1 while it copies the earlier autosave to the previous
# generation, 2 once the new file is complete and before it is renamed over the old one.
_CHILD = r"""
import os, sys, time
import numpy as np
from napari_lesionseg.data.corrections import save_corrected_mask
from napari_lesionseg.data.subject import load_subject

calls = []
fsync = os.fsync

def stall(fd):
    calls.append(fd)
    if len(calls) == int(sys.argv[3]):
        print("writing", flush=True)
        time.sleep(120)
    fsync(fd)

os.fsync = stall
subject = load_subject(sys.argv[1])
save_corrected_mask(np.ones(subject.geometry.shape, np.uint8), subject.geometry, sys.argv[2], keep_earlier=True)
"""


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))


def _inputs(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.iterdir() if "corrected" not in p.name}


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def _good(shape) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[2:5, 3:7, 1:4] = 1
    return mask


@pytest.mark.parametrize("stall_at", [1, 2], ids=["keeping-previous", "renaming-new"])
def test_a_kill_during_an_autosave_leaves_the_last_good_corrections_offered(make_subject, stall_at):
    folder = make_subject()
    subject = load_subject(folder)
    inputs = _inputs(folder)
    target = corrected_mask_path(folder, subject.name)
    good = _good(subject.geometry.shape)
    save_corrected_mask(good, subject.geometry, target)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(folder), str(target), str(stall_at)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        assert _temps(folder), "the child should be in the middle of its write"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    offered = find_corrected_mask(folder, subject.name)
    assert offered == target
    assert np.array_equal(load_corrected_mask(offered), good)
    assert _temps(folder) == []  # the killed write's temporary file is cleaned up
    assert _inputs(folder) == inputs


def test_an_unreadable_or_missing_newest_offers_the_previous_generation(make_subject):
    folder = make_subject()
    subject = load_subject(folder)
    inputs = _inputs(folder)
    target = corrected_mask_path(folder, subject.name)
    good = _good(subject.geometry.shape)
    save_corrected_mask(good, subject.geometry, target)
    save_corrected_mask(good * 0, subject.geometry, target, keep_earlier=True)  # a fresh session's first write
    assert np.array_equal(load_corrected_mask(previous_path(target)), good)
    target.write_bytes(target.read_bytes()[:40])  # truncated by a crash of another tool, a full disk...
    assert find_corrected_mask(folder, subject.name) == previous_path(target)
    save_corrected_mask(good + 1, subject.geometry, target, keep_earlier=True)
    assert np.array_equal(load_corrected_mask(previous_path(target)), good)  # the bad file was not kept over it
    target.unlink()
    assert find_corrected_mask(folder, subject.name) == previous_path(target)
    assert _temps(folder) == [] and _inputs(folder) == inputs


def test_at_most_one_older_generation_is_kept(make_subject):
    folder = make_subject()
    subject = load_subject(folder)
    target = corrected_mask_path(folder, subject.name)
    for value in range(3):
        save_corrected_mask(_good(subject.geometry.shape) * value, subject.geometry, target, keep_earlier=True)
    corrected = sorted(p.name for p in folder.iterdir() if "corrected" in p.name)
    assert corrected == sorted([previous_path(target).name, target.name])
    assert load_corrected_mask(previous_path(target)).max() == 1 and _temps(folder) == []
