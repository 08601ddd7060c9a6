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
    inputs: Sequence[tuple[str, Geometry | None]], space: ModelSpace | None, reference: Geometry | None
) -> tuple[np.ndarray | None, dict[str, float]]:
    """The model-space voxels where every input that lies on another grid than `reference` has data (None: all),
    and the share of the reference's field of view each such input covers.

    Only what the reference covers is judged: the model grid's rim beyond the reference image is not
    an input's fault.
    """
    if space is None or reference is None:
        return None, {}
    covered, shares, seen = None, {}, None
    for name, source in inputs:
        if source is None or source.same_grid(reference):
            continue
        seen = _inside(reference, space) if seen is None else seen
        inside = _inside(source, space) | ~seen
        share = float(np.count_nonzero(inside & seen) / max(1, np.count_nonzero(seen)))
        if share < 1.0:
            shares[name] = share
            covered = inside if covered is None else covered & inside
    return covered, shares


def _inside(source: Geometry, space: ModelSpace) -> np.ndarray:
    """The model-space voxels inside `source`'s field of view."""
    ones = np.ones(source.shape, np.float32)
    return resample_to_grid(ones, source, space.geometry, order=1, cval=0.0) >= MIN_COVERED


def coverage_note(shares: dict[str, float], reference: str = "FLAIR", *, required: bool = True) -> str:
    """One line naming the inputs that cover less of the `reference`'s field of view, and what follows."""
    listed = ", ".join(f"{name} covers {share:.0%}" for name, share in shares.items())
    if not required:
        them = "them" if len(shares) > 1 else "it"
        return f"{listed} of the {reference}'s field of view: beyond it the network runs without {them} (optional inputs)"
    return f"{listed} of the {reference}'s field of view: no lesion is reported where a required input is missing"
