"""Folded anatomy for the training generator: a thin cortical ribbon with sulci, multi-scale warps, atrophy.

The MNI152 average has a smooth, blurred cortex; a real brain has a grey-matter ribbon 2-4 mm thick
folded around white-matter gyri, with CSF in the sulci between the folds. Here the cortical band
(the outer centimetre or two of the cerebrum) is rebuilt per subject:

* the white-matter surface is the template's, at a threshold that varies in space (thicker or
  thinner gyri); the sulci are the ridges of the distance outside it, where the nearest
  white-matter point jumps from one bank to the other, so two facing gyri always get CSF between
  them, however blurred the template left the gap;
* the CSF is the sulci (widened by atrophy), a thin layer under the hull and the template's own
  CSF (fissures);
* grey matter is everything within the ribbon thickness (2-4 mm) of that CSF, white matter the
  rest, so every gyrus gets a white-matter core.

Deeper structures (basal ganglia, thalamus, ventricles) and the infratentorial brain keep the
template's maps. Atrophy widens the sulci and the subarachnoid space, thins the ribbon and enlarges
the lateral ventricles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.data.phantom._fields import Grid, smooth_field
from napari_lesionseg.data.phantom.anatomy import (
    TemplateMaps,
    _add_sagittal_sinus,
    _coverage,
    _rotation,
    sample_head,
)

__all__ = ["FoldedAnatomy", "make_folded_anatomy"]

#: Depth (mm) under the brain hull of the band whose cortex is rebuilt; deeper the template stays.
_BAND_DEPTH_MM = (15.0, 19.0)
#: Cortical thickness (mm) before atrophy; the ribbon is clipped to 2-4 mm.
_THICKNESS_MM = (2.3, 3.3)
_THICKNESS_LIMITS = (2.0, 4.0)
#: Head size relative to the template, drawn log-uniformly: registered (rigidly or affinely) to MNI, or native.
_SIZE_REGISTERED = (0.82, 1.05)
_SIZE_NATIVE = (0.8, 1.2)
#: Deformation scales: (knot spacing mm, displacement std mm) of the smooth warps added together.
_WARP_SCALES = ((70.0, 3.0), (36.0, 2.0), (18.0, 0.8))


@dataclass
class FoldedAnatomy:
    """One training subject's anatomy on its grid (canonical S, P, L).

    Attributes:
        fractions: tissue -> fraction per voxel, as `anatomy.Anatomy.fractions`.
        ventricle_distance: distance (mm) of each voxel to the (enlarged) lateral ventricles.
        infratentorial: boolean map of the brainstem and cerebellum.
        face: boolean map of what a defacing tool removes (face and front of the neck, outside the brain).
    """

    fractions: dict[str, np.ndarray]
    ventricle_distance: np.ndarray
    infratentorial: np.ndarray
    face: np.ndarray


def make_folded_anatomy(
    template: TemplateMaps,
    grid: Grid,
    rng: np.random.Generator,
    spacing: float,
    *,
    registered: bool,
    atrophy: float,
) -> FoldedAnatomy:
    """Deform the template (pose, size, warps at several scales), fold its cortex and apply `atrophy` (0-1).

    Args:
        template: the MNI152 maps (`anatomy.load_template`).
        grid: the subject's voxel grid.
        rng: the anatomy's source of randomness.
        spacing: voxel size (mm).
        registered: registered to MNI (small pose and size changes) or native (head pose and size vary).
        atrophy: 0 (none) to 1 (marked): sulcal and subarachnoid CSF, thinner cortex, larger ventricles.
    """
    coords = _template_coordinates(grid, rng, registered)
    fractions, hull, ventricles = sample_head(template, grid, coords, rng, spacing)
    infratentorial = _infratentorial_weight(coords)
    ventricles = _enlarge_ventricles(fractions, ventricles, atrophy * rng.uniform(1.0, 5.0), spacing)
    _fold_cortex(fractions, hull, ventricles, infratentorial, grid, rng, spacing, atrophy)
    _add_sagittal_sinus(fractions, hull, coords, spacing)
    face = (hull > 2.0) & (coords[1] > 0.0) & (coords[2] < -10.0 + 0.7 * (coords[1] - 70.0))
    return FoldedAnatomy(fractions, ventricles, infratentorial >= 0.5, face)


def _template_coordinates(grid: Grid, rng: np.random.Generator, registered: bool) -> list[np.ndarray]:
    """Template (MNI mm) coordinates of every voxel: inverse pose and size, plus warps at several scales."""
    centre = np.array([0.0, -18.0, 10.0])
    max_angle, max_shift = (3.0, 3.0) if registered else (12.0, 10.0)
    angles = np.deg2rad(rng.uniform(-max_angle, max_angle, size=3))
    # Real brains are mostly smaller than the MNI152 average (sub-p26, rigidly registered: about 0.88).
    size = float(np.exp(rng.uniform(*np.log(_SIZE_REGISTERED if registered else _SIZE_NATIVE))))
    scale = size * rng.uniform(0.95, 1.05, size=3)
    shift = rng.uniform(-max_shift, max_shift, size=3)
    inverse = np.diag(1.0 / scale) @ _rotation(angles).T
    strength = rng.uniform(0.5, 1.5)
    warp = [
        sum(smooth_field(grid, rng, knot_spacing_mm=knot, std=std * strength) for knot, std in _WARP_SCALES)
        for _ in range(3)
    ]
    relative = [grid.world(a) - centre[a] - shift[a] for a in range(3)]
    coords = []
    for a in range(3):
        mapped = sum(inverse[a, b] * relative[b] for b in range(3))
        coords.append((mapped + centre[a] + warp[a]).astype(np.float32))
    return coords


def _infratentorial_weight(coords: list[np.ndarray]) -> np.ndarray:
    """About 1 in the cerebellum and brainstem (template coordinates), 0 above the tentorium."""
    x, y, z = coords
    cerebellum = _sigmoid((-22.0 - z) / 3.0) * _sigmoid((-30.0 - y) / 3.0)
    brainstem = (
        _sigmoid((12.0 - np.abs(x)) / 2.0) * _sigmoid((-8.0 - z) / 3.0) * _sigmoid((y + 45.0) / 3.0)
        * _sigmoid((-5.0 - y) / 3.0)
    )  # fmt: skip
    return np.maximum(cerebellum, brainstem).astype(np.float32)


def _enlarge_ventricles(
    fractions: dict[str, np.ndarray], ventricles: np.ndarray, grow_mm: float, spacing: float
) -> np.ndarray:
    """Grow the lateral ventricles by `grow_mm`, CSF replacing tissue; return the distance to the new wall."""
    if grow_mm <= 0.0:
        return ventricles
    inside = fractions["gm"] + fractions["wm"] + fractions["csf"]
    csf = np.maximum(fractions["csf"], _coverage(ventricles, grow_mm, spacing) * inside)
    scale = (inside - csf) / np.maximum(inside - fractions["csf"], 1e-6)
    fractions["gm"] = (fractions["gm"] * scale).astype(np.float32)
    fractions["wm"] = (fractions["wm"] * scale).astype(np.float32)
    fractions["csf"] = csf.astype(np.float32)
    return np.maximum(ventricles - grow_mm, 0.0).astype(np.float32)


def _fold_cortex(
    fractions: dict[str, np.ndarray],
    hull: np.ndarray,
    ventricles: np.ndarray,
    infratentorial: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
    spacing: float,
    atrophy: float,
) -> None:
    """Rebuild grey matter, white matter and CSF in the cortical band as a folded ribbon (in place)."""
    depth = -hull  # mm inside the brain hull
    # The white-matter surface follows the template's gyri; a varying threshold widens or thins them.
    threshold = np.clip(0.5 + smooth_field(grid, rng, knot_spacing_mm=20.0, std=0.12), 0.25, 0.75)
    white = fractions["wm"] >= threshold
    _, nearest = ndi.distance_transform_edt(~white, sampling=spacing, return_indices=True)
    thickness = np.clip(
        rng.uniform(*_THICKNESS_MM) - 0.4 * atrophy + smooth_field(grid, rng, knot_spacing_mm=25.0, std=0.35),
        *_THICKNESS_LIMITS,
    )
    half_width = 0.3 + 0.8 * atrophy + np.abs(smooth_field(grid, rng, knot_spacing_mm=20.0, std=0.25))
    sulci = ndi.distance_transform_edt(~_sulcal_sheets(nearest), sampling=spacing) - 0.5 * spacing - half_width
    del nearest
    gap = 0.3 + 1.2 * atrophy  # subarachnoid CSF under the hull
    template_csf = ndi.distance_transform_edt(fractions["csf"] < 0.5, sampling=spacing) - 0.5 * spacing
    # Signed distance to CSF (sulci, the layer under the hull, fissures): the ribbon lies within `thickness` of it.
    to_csf = np.minimum(np.minimum(depth - gap, sulci), template_csf)
    csf = _coverage(to_csf, 0.0, spacing)
    cortex = _coverage(to_csf, thickness, spacing)
    band_depth = rng.uniform(*_BAND_DEPTH_MM) + smooth_field(grid, rng, knot_spacing_mm=30.0, std=2.0)
    band = _coverage(depth, band_depth, 4.0) * (1.0 - infratentorial) * _coverage(-ventricles, -5.0, 3.0)
    inside = fractions["gm"] + fractions["wm"] + fractions["csf"]
    folded = {"csf": csf, "gm": cortex - csf, "wm": 1.0 - cortex}
    for name, fraction in folded.items():
        fractions[name] = (band * fraction * inside + (1.0 - band) * fractions[name]).astype(np.float32)


def _sulcal_sheets(nearest: np.ndarray) -> np.ndarray:
    """Voxels between two facing banks of white matter: neighbours whose nearest white-matter points lie apart.

    Where two gyri face each other the nearest white-matter point jumps from one bank to the other
    between neighbouring voxels, so the vectors to it turn by more than 90 degrees: that ridge of the
    distance map is where the sulcal CSF lies, however narrow the template left the gap.
    """
    shape = nearest.shape[1:]
    grid = np.indices(shape, dtype=np.int32)
    vector = (nearest - grid).astype(np.float32)
    del grid
    length = np.sqrt((vector * vector).sum(axis=0))
    ridge = np.zeros(shape, dtype=bool)
    for axis in range(3):
        here = [slice(None)] * 3
        ahead = [slice(None)] * 3
        here[axis], ahead[axis] = slice(0, -1), slice(1, None)
        a, b = vector[(slice(None), *here)], vector[(slice(None), *ahead)]
        dot = (a * b).sum(axis=0)
        facing = (dot < 0) & (length[tuple(here)] >= 1.0) & (length[tuple(ahead)] >= 1.0)
        ridge[tuple(here)] |= facing
    return ridge


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-t))
