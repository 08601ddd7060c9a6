"""Where every required input was acquired: the model-space voxels inside each one's field of view.

A raw clinical T1w often has fewer slices than the FLAIR of the same session. Resampled onto the
model's grid it is zero beyond its slab, which the network reads as a strange, dark image and may
mark with lesions. The network cannot judge a voxel without its inputs, so the prediction entry
point reports no lesion outside the coverage of the required inputs, skips those patches, and says
which input covers less.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_lesionseg.data.geometry import Geometry
from napari_lesionseg.data.resample import resample_to_grid
from napari_lesionseg.engine.model_space import ModelSpace

__all__ = ["MIN_COVERED", "coverage_note", "input_coverage"]

#: Interpolated weight above which a model-space voxel counts as inside an input's field of view.
MIN_COVERED = 0.5


def input_coverage(
    inputs: Sequence[tuple[str, Geometry | None]], space: ModelSpace | None
) -> tuple[np.ndarray | None, dict[str, float]]:
    """The model-space voxels every input covers (None: all of them), and each short input's covered share."""
    if space is None:
        return None, {}
    covered, shares = None, {}
    for name, source in inputs:
        if source is None or source.same_grid(space.geometry):
            continue
        ones = np.ones(source.shape, np.float32)
        inside = resample_to_grid(ones, source, space.geometry, order=1, cval=0.0) >= MIN_COVERED
        share = float(inside.mean())
        if share < 1.0:
            shares[name] = share
            covered = inside if covered is None else covered & inside
    return covered, shares


def coverage_note(shares: dict[str, float]) -> str:
    """One line naming the inputs that cover less of the grid than the reference, and what follows."""
    listed = ", ".join(f"{name} covers {share:.0%}" for name, share in shares.items())
    return f"{listed} of the reference image's field of view: no lesion is reported where a required input is missing"
