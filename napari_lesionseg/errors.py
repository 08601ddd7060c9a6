"""Exceptions with messages meant for users: the CLI prints them, the widgets show them as notifications."""

from __future__ import annotations


class LesionSegError(ValueError):
    """A problem the user can fix (bad file, bad layer, bad option); the message says which and how."""


class InvalidInputError(LesionSegError):
    """An input file, folder, array or layer that cannot be used as given."""


class CheckpointError(LesionSegError):
    """A checkpoint that is missing, corrupt, or does not fit the data or the network."""


class LesionSegWarning(UserWarning):
    """Something the user should know about an input that can still be used (the CLI prints it on one line)."""


class GeometryWarning(LesionSegWarning):
    """A NIfTI header whose geometry is suspicious (voxel sizes, qform/sform) but still usable."""
