"""The npe2 manifest: every command resolves, and each dock command points at that dock's own module."""

import importlib
from pathlib import Path

import npe2

import napari_lesionseg._napari as napari_side

MANIFEST = npe2.PluginManifest.from_file(Path(napari_side.__file__).parent / "napari.yaml")


def test_every_command_resolves_to_a_callable():
    for command in MANIFEST.contributions.commands:
        module, attribute = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attribute)), command.id


def test_each_dock_command_points_at_its_own_module():
    widget_commands = {w.command for w in MANIFEST.contributions.widgets}
    for command in MANIFEST.contributions.commands:
        if command.id in widget_commands:
            module, attribute = command.python_name.split(":")
            assert module.startswith("napari_lesionseg._napari.docks."), command.python_name
            assert getattr(importlib.import_module(module), attribute).__module__ == module
