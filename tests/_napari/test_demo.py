"""The app as the README's first command builds it: every dock, a subject, the lesion slice shown."""

from __future__ import annotations

import numpy as np

from napari_lesionseg._napari.demo import DOCKS, build_app, summarise


def test_build_app_adds_every_dock_and_opens_the_subject(make_napari_viewer, make_subject, monkeypatch, tmp_path):
    monkeypatch.setenv("LESIONSEG_HOME", str(tmp_path / "home"))
    viewer = make_napari_viewer()
    docks = build_app(viewer, make_subject())
    assert list(docks) == list(DOCKS)
    names = [layer.name for layer in viewer.layers]
    assert names[:4] == ["FLAIR", "T1w", "T2w", "PDw"] and "reference mask" in names
    mask = np.asarray(viewer.layers["reference mask"].data)
    shown = viewer.dims.current_step[0]
    assert mask[shown].sum() == mask.reshape(mask.shape[0], -1).sum(axis=1).max()  # the slice with most lesion
    summary = summarise(viewer, docks)
    assert summary["docks"] == sorted(DOCKS)
    assert {layer["name"] for layer in summary["layers"]} == set(names)
