"""Head anatomy of a phantom subject: MNI152 tissue maps, a skull/scalp shell, a random deformation.

The MNI ICBM152 2009 template and its grey/white matter probability maps ship inside nilearn's
package (no download). They are loaded once per process at 1 mm; every subject then samples them
through its own smooth random deformation onto its own grid, in the canonical (S, P, L) order.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.data.phantom._fields import Grid, smooth_field
from napari_lesionseg.errors import LesionSegError

__all__ = ["Anatomy", "TemplateMaps", "load_template", "canonical_grid", "make_anatomy", "sample_head"]

#: The MNI ICBM152 2009a (symmetric) T1 and tissue probability maps, as nilearn ships them.
_TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
#: Field of view beyond the template's brain, per side (mm): room for skull, scalp and head pose.
_HEAD_MARGIN_MM = 28.0
#: Resolution of the smooth template-space distance maps (hull, ventricles).
_COARSE_MM = 2.0
#: Layers outside the brain hull, each with its outer distance (mm) from the hull: meninges
#: (CSF and dura), inner table, diploe, outer table, galea/muscle, subcutaneous fat and skin; then air.
SCALP_LAYERS: tuple[tuple[str, float], ...] = (
    ("meninges", 1.5),
    ("bone", 3.3),
    ("marrow", 5.8),
    ("bone", 7.3),
    ("muscle", 8.8),
    ("fat", 13.5),
)
#: How many of SCALP_LAYERS make up the meninges and skull (the rest is soft scalp).
_SKULL_LAYERS = 4
#: Exponent that sharpens the template's tissue probabilities (1 keeps them as they are).
_SHARPNESS = 1.6


@dataclass(frozen=True)
class TemplateMaps:
    """Template-space maps, loaded once: tissue probabilities (uint8, 1 mm) and distances (mm, 2 mm)."""

    gm: np.ndarray
    wm: np.ndarray
    #: voxel (0, 0, 0) of the 1 mm maps in world mm (x, y, z); axes run along +x, +y, +z.
    origin: np.ndarray
    #: signed distance (mm) to the brain hull, positive outside, on the coarse grid.
    hull_distance: np.ndarray
    #: distance (mm) to the lateral ventricles, on the coarse grid.
    ventricle_distance: np.ndarray
    coarse_origin: np.ndarray
    #: world (x, y, z) mm of the brain's lowest and highest corners, shape (2, 3).
    brain_box: np.ndarray


@dataclass
class Anatomy:
    """One subject's anatomy on its own grid (canonical S, P, L).

    Attributes:
        fractions: tissue -> fraction of each voxel in [0, 1]: "gm", "wm", "csf" (brain) and the
            SCALP_LAYERS tissues, "sinus"; they sum to one inside the head.
        ventricle_distance: distance (mm) of each voxel to the lateral ventricles.
    """

    fractions: dict[str, np.ndarray]
    ventricle_distance: np.ndarray


@functools.lru_cache(maxsize=1)
def load_template() -> TemplateMaps:
    """Load the MNI152 template maps shipped in nilearn's package; derive the brain hull and the ventricles.

    The files are read with nibabel and processed as nilearn's `load_mni152_*_template` and
    `load_mni152_brain_mask` functions do (scaled to a maximum of 1; brain = T1 > 0.2), without
    importing nilearn, whose import alone takes seconds.
    """
    folder = _nilearn_data_dir()
    t1, gm, wm = (_load_unit_max(folder / _TEMPLATE_FILES[name]) for name in ("t1", "gm", "wm"))
    brain = t1 > 0.2
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    gm, wm = _sharpen(gm, wm)
    origin = nib.load(folder / _TEMPLATE_FILES["gm"]).affine[:3, 3].astype(np.float64)
    hull_distance, coarse_origin = _hull_distance(brain, origin)
    ventricle_distance = _ventricle_distance(csf, brain, origin, coarse_origin, hull_distance.shape)
    return TemplateMaps(
        gm=_to_uint8(gm),
        wm=_to_uint8(wm),
        origin=origin,
        hull_distance=hull_distance,
        ventricle_distance=ventricle_distance,
        coarse_origin=coarse_origin,
        brain_box=_bounding_box(brain) + origin,
    )


def canonical_grid(template: TemplateMaps, spacing: float) -> tuple[Grid, np.ndarray]:
    """The field of view (the brain plus a scalp margin) sampled at `spacing` mm, in (S, P, L) order.

    The head is cut at the template's inferior edge, as an axial brain scan cuts through the neck.

    Returns:
        The grid and the 4x4 affine from its array indices to RAS+ world millimetres.
    """
    low = template.brain_box[0] - _HEAD_MARGIN_MM
    high = template.brain_box[1] + _HEAD_MARGIN_MM
    low[2] = template.origin[2]
    counts = np.floor((high - low) / spacing).astype(int) + 1
    x = high[0] - spacing * np.arange(counts[0])  # right -> left
    y = high[1] - spacing * np.arange(counts[1])  # anterior -> posterior
    z = low[2] + spacing * np.arange(counts[2])  # inferior -> superior
    affine = np.array(
        [
            [0.0, 0.0, -spacing, high[0]],
            [0.0, -spacing, 0.0, high[1]],
            [spacing, 0.0, 0.0, low[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    return Grid((z, y, x), world_axes=(2, 1, 0)), affine


def make_anatomy(template: TemplateMaps, grid: Grid, rng: np.random.Generator, spacing: float) -> Anatomy:
    """Deform the template into one subject (pose, head size, smooth warp) and sample its tissues."""
    template_coords = _subject_to_template(grid, rng)
    fractions, hull_distance, ventricle_distance = sample_head(template, grid, template_coords, rng, spacing)
    _add_sagittal_sinus(fractions, hull_distance, template_coords, spacing)
    return Anatomy(fractions=fractions, ventricle_distance=ventricle_distance)


def sample_head(
    template: TemplateMaps, grid: Grid, coords: list[np.ndarray], rng: np.random.Generator, spacing: float
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The tissue fractions (skull and scalp of random thickness) at template coordinates `coords`, with the
    brain-hull and ventricle distances there."""
    skull_scale = 1.0 + smooth_field(grid, rng, knot_spacing_mm=50.0, std=0.18)
    scalp_scale = np.maximum(1.0 + smooth_field(grid, rng, knot_spacing_mm=60.0, std=0.2), 0.3)
    voxel = [(coords[a] - template.origin[a]) for a in range(3)]
    coarse = [(coords[a] - template.coarse_origin[a]) / _COARSE_MM for a in range(3)]
    brain = {name: _sample_uint8(getattr(template, name), voxel) for name in ("gm", "wm")}
    hull = ndi.map_coordinates(template.hull_distance, coarse, order=1, mode="nearest", output=np.float32)
    ventricles = ndi.map_coordinates(template.ventricle_distance, coarse, order=1, mode="nearest", output=np.float32)
    return _head_fractions(brain, hull, skull_scale, scalp_scale, spacing), hull, ventricles


def _nilearn_data_dir() -> Path:
    """nilearn's package data folder, found without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise LesionSegError(
            "the phantom needs nilearn for its MNI152 anatomy, and nilearn is not installed: "
            "run `pip install napari-lesionseg[phantom]`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in _TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise LesionSegError(
            f"nilearn in {folder.parent.parent} does not ship the MNI152 template files {', '.join(missing)}: "
            "run `pip install -U napari-lesionseg[phantom]` (nilearn >= 0.10)"
        )
    return folder


def _load_unit_max(path: Path) -> np.ndarray:
    data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    return data / data.max()


def _bounding_box(mask: np.ndarray) -> np.ndarray:
    """Lowest and highest voxel index of `mask` along each axis, shape (2, 3)."""
    corners = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        corners.append((present[0], present[-1]))
    return np.array(corners, dtype=np.float64).T


def _to_uint8(probability: np.ndarray) -> np.ndarray:
    return np.round(np.clip(probability, 0.0, 1.0) * 255).astype(np.uint8)


def _sample_uint8(volume: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    """Trilinear sample of a uint8 probability map; below the template it repeats the lowest slice."""
    sampled = ndi.map_coordinates(volume, coords, order=1, mode="grid-constant", output=np.float32)
    below = coords[2] < 0
    if below.any():
        clamped = [c[below] for c in coords[:2]] + [np.zeros(int(below.sum()), dtype=coords[2].dtype)]
        sampled[below] = ndi.map_coordinates(volume, clamped, order=1, mode="grid-constant", output=np.float32)
    return sampled / 255.0


def _subject_to_template(grid: Grid, rng: np.random.Generator) -> list[np.ndarray]:
    """Template-space (MNI mm) coordinates of every voxel: inverse head pose, size and smooth warp."""
    centre = np.array([0.0, -18.0, 10.0])
    angles = np.deg2rad(rng.uniform(-4.0, 4.0, size=3))
    scale = rng.uniform(0.93, 1.07, size=3)
    shift = rng.uniform(-4.0, 4.0, size=3)
    inverse = np.diag(1.0 / scale) @ _rotation(angles).T
    warp = [smooth_field(grid, rng, knot_spacing_mm=36.0, std=2.0) for _ in range(3)]
    relative = [grid.world(a) - centre[a] - shift[a] for a in range(3)]
    coords = []
    for a in range(3):
        mapped = sum(inverse[a, b] * relative[b] for b in range(3))
        coords.append((mapped + centre[a] + warp[a]).astype(np.float32))
    return coords


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _head_fractions(
    brain: dict[str, np.ndarray],
    distance: np.ndarray,
    skull_scale: np.ndarray,
    scalp_scale: np.ndarray,
    spacing: float,
) -> dict[str, np.ndarray]:
    """Tissue fractions of every voxel: brain tissues inside the hull, scalp layers outside it.

    Each layer's fraction is the overlap of the voxel (width `spacing`) with the layer, so borders
    get partial volume. The skull and the soft scalp vary in thickness by the two scale fields.
    """
    inside = _coverage(distance, 0.0, spacing)
    gm, wm = brain["gm"] * inside, brain["wm"] * inside
    fractions = {"gm": gm, "wm": wm, "csf": np.clip(inside - gm - wm, 0.0, 1.0)}
    skull_end = SCALP_LAYERS[_SKULL_LAYERS - 1][1]
    below = inside
    for position, (name, end) in enumerate(SCALP_LAYERS):
        if position < _SKULL_LAYERS:
            boundary = end * skull_scale
        else:
            boundary = skull_end * skull_scale + (end - skull_end) * scalp_scale
        covered = _coverage(distance, boundary, spacing)
        fractions[name] = fractions.get(name, 0.0) + np.maximum(covered - below, 0.0)
        below = np.maximum(covered, below)
    return {name: np.asarray(f, dtype=np.float32) for name, f in fractions.items()}


def _sharpen(gm: np.ndarray, wm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sharpen the template's averaged (blurred) tissue borders towards those of a single brain.

    The three classes (GM, WM, the rest) are raised to a power and renormalised, so they still
    sum to one; done at 1 mm, before resampling, so coarser grids get their own partial volume.
    """
    rest = np.clip(1.0 - gm - wm, 0.0, 1.0)
    gm, wm, rest = gm**_SHARPNESS, wm**_SHARPNESS, rest**_SHARPNESS
    total = np.maximum(gm + wm + rest, 1e-6)
    return gm / total, wm / total


def _add_sagittal_sinus(
    fractions: dict[str, np.ndarray], hull_distance: np.ndarray, template_coords: list[np.ndarray], spacing: float
) -> None:
    """The superior sagittal sinus: a midline channel along the top of the hull, replacing other tissue."""
    midline = np.clip(0.5 + (3.0 - np.abs(template_coords[0])) / spacing, 0.0, 1.0)
    band = _coverage(hull_distance, 1.5, spacing) - _coverage(hull_distance, -4.0, spacing)
    superior = np.clip((template_coords[2] + 10.0) / 10.0, 0.0, 1.0)
    sinus = (midline * band * superior).astype(np.float32)
    for name in fractions:
        fractions[name] *= 1.0 - sinus
    fractions["sinus"] = sinus


def _coverage(distance: np.ndarray, boundary: float, spacing: float) -> np.ndarray:
    """Fraction of each voxel lying at distances below `boundary` (a linear ramp one voxel wide)."""
    return np.clip(0.5 + (boundary - distance) / spacing, 0.0, 1.0)


def _hull_distance(brain: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm) to a smooth hull around the brain, on a padded 2 mm grid.

    The hull is the brain mask blurred and thresholded low, so it bridges the sulci like the
    arachnoid does; the grid is padded by edge replication at the bottom so that the head stays
    open below the template, as a neck, and the brain box's margin of about 25 mm inside the
    template box keeps the scalp off the edges.
    """
    step = int(_COARSE_MM)
    coarse = brain[::step, ::step, ::step].astype(np.float32)
    # Beyond the template box lies air (sampled with mode="nearest"), so a small pad will do.
    pad = int(np.ceil(12.0 / _COARSE_MM))
    padded = np.pad(coarse, ((pad, pad), (pad, pad), (0, pad)), mode="constant")
    padded = np.pad(padded, ((0, 0), (0, 0), (pad, 0)), mode="edge")
    hull = ndi.gaussian_filter(padded, sigma=3.0 / _COARSE_MM) > 0.25
    hull |= padded > 0.5
    hull = ndi.binary_fill_holes(hull)
    outside = ndi.distance_transform_edt(~hull, sampling=_COARSE_MM)
    inside = ndi.distance_transform_edt(hull, sampling=_COARSE_MM)
    coarse_origin = origin - pad * _COARSE_MM
    return (outside - inside).astype(np.float32), coarse_origin


def _ventricle_distance(
    csf: np.ndarray, brain: np.ndarray, origin: np.ndarray, coarse_origin: np.ndarray, coarse_shape: tuple[int, ...]
) -> np.ndarray:
    """Distance (mm) to the lateral ventricles: large, deep CSF spaces of the template off the midline.

    The deep midline CSF (interhemispheric fissure, cisterns) forms one component centred on x = 0;
    each lateral ventricle forms its own, a few centimetres to the side.
    """
    step = int(_COARSE_MM)
    # The chessboard distance is a few times faster than the Euclidean one and close enough here.
    depth = ndi.distance_transform_cdt(brain, metric="chessboard")
    deep_csf = (csf > 0.5) & (depth > 13)  # mm from the brain's surface
    labels, count = ndi.label(deep_csf)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    large = np.flatnonzero(sizes >= 2000)  # mm^3; each lateral ventricle holds about 7 mL
    keep = [label for label in large if abs(_centre_x(labels, label) + origin[0]) > 8.0]
    ventricles = np.isin(labels, keep)[::step, ::step, ::step]
    offset = np.round((origin - coarse_origin) / _COARSE_MM).astype(int)
    padded = np.zeros(coarse_shape, dtype=bool)
    padded[tuple(slice(o, o + n) for o, n in zip(offset, ventricles.shape))] = ventricles
    return ndi.distance_transform_edt(~padded, sampling=_COARSE_MM).astype(np.float32)


def _centre_x(labels: np.ndarray, label: int) -> float:
    """Mean index along the first (x) axis of the voxels carrying `label`."""
    return float(np.nonzero(labels == label)[0].mean())
