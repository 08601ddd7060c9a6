"""MS-like white-matter lesions: periventricular ovoids (Dawson's fingers), deep and juxtacortical ones.

Each lesion is an ellipsoid whose radius is perturbed by smooth noise, rendered with partial volume
at its rim and gated by the white-matter fraction, so lesions stay inside white matter. Lesions are
added until the mask reaches the subject's target volume; at higher loads periventricular lesions
come in clusters that merge into confluent caps along the ventricle walls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["LESION_KINDS", "LESION_LOADS", "LesionField", "LesionStyle", "lesion_style", "place_lesions"]

#: Lesion volume (mL) of each load category, drawn log-uniformly between the bounds.
LESION_LOADS: dict[str, tuple[float, float]] = {
    "very_low": (0.15, 0.6),
    "low": (1.0, 3.5),
    "medium": (4.0, 10.0),
    "high": (12.0, 30.0),
}
#: Equivalent radius (mm) of single lesions per load category, drawn log-uniformly.
_RADIUS_MM: dict[str, tuple[float, float]] = {
    "very_low": (1.8, 3.2),
    "low": (1.5, 4.0),
    "medium": (1.6, 5.0),
    "high": (1.7, 6.5),
}
#: Chance that a periventricular lesion grows a cluster of neighbours (confluent lesions).
_CLUSTER_CHANCE = {"very_low": 0.0, "low": 0.1, "medium": 0.3, "high": 0.55}
_KINDS = ("periventricular", "deep", "juxtacortical")
_KIND_CHANCE = (0.5, 0.3, 0.2)
#: Every kind a `LesionStyle` may ask for; "infratentorial" needs its region (brainstem, cerebellum).
LESION_KINDS = (*_KINDS, "infratentorial")
_MAX_LESIONS = 1500
#: Width (mm) of the partial-volume ramp at a lesion's rim, when voxels are smaller than that.
_RIM_MM = 1.5


@dataclass
class LesionField:
    """Lesion fraction per voxel in [0, 1] and the contrast of the lesion that dominates each voxel."""

    fraction: np.ndarray
    #: hyperintensity on FLAIR/T2w/PDw, 0 (isointense) to 1 (full lesion contrast).
    t2_strength: np.ndarray
    #: hypointensity on T1w, 0 (isointense) to 1 (a "black hole").
    t1_strength: np.ndarray
    #: gadolinium enhancement on T1c, 0 to 1 (solid or ring-shaped).
    enhancement: np.ndarray


@dataclass(frozen=True)
class LesionStyle:
    """How lesions are drawn: their sizes, how often periventricular ones cluster, where they go."""

    #: equivalent radius (mm) of single lesions, drawn log-uniformly.
    radius_mm: tuple[float, float]
    #: chance that a periventricular lesion grows a cluster of neighbours (confluent lesions).
    cluster_chance: float
    #: kind (of LESION_KINDS) -> chance, summing to 1.
    kind_chance: Mapping[str, float]


def lesion_style(category: str) -> LesionStyle:
    """The phantom's style for a load category of LESION_LOADS."""
    return LesionStyle(_RADIUS_MM[category], _CLUSTER_CHANCE[category], dict(zip(_KINDS, _KIND_CHANCE)))


@dataclass(frozen=True)
class _Candidates:
    """Flat indices of the voxels where each kind of lesion may be centred."""

    by_kind: dict[str, np.ndarray]

    def any(self) -> bool:
        return any(len(v) for v in self.by_kind.values())


def place_lesions(
    wm: np.ndarray,
    ventricle_distance: np.ndarray,
    spacing: float,
    target_ml: float,
    category: str,
    rng: np.random.Generator,
    style: LesionStyle | None = None,
    infratentorial: np.ndarray | None = None,
) -> LesionField:
    """Add lesions inside white matter until their mask (fraction >= 0.5) reaches `target_ml`.

    Args:
        wm: white-matter fraction of every voxel (an isotropic grid).
        ventricle_distance: distance (mm) of every voxel to the lateral ventricles.
        spacing: voxel size (mm).
        target_ml: lesion volume to reach; 0 gives no lesions.
        category: a key of LESION_LOADS: sets the lesion sizes and how often they cluster.
        rng: source of every random choice.
        style: sizes, clustering and kinds instead of the category's (None: `lesion_style(category)`).
        infratentorial: boolean map of the brainstem and cerebellum, where "infratentorial" lesions go.
    """
    style = style or lesion_style(category)
    kinds = tuple(style.kind_chance)
    chances = tuple(style.kind_chance.values())
    field = LesionField(*(np.zeros(wm.shape, dtype=np.float32) for _ in range(4)))
    target_voxels = target_ml * 1000.0 / spacing**3
    if target_voxels <= 0:
        return field
    candidates = _candidates(wm, ventricle_distance, spacing, infratentorial)
    gate = np.clip((wm - 0.35) / 0.3, 0.0, 1.0)  # no lesion below 35 % white matter, full above 65 %
    voxels = 0
    placed = 0
    while voxels < target_voxels and placed < _MAX_LESIONS and candidates.any():
        kind = kinds[rng.choice(len(kinds), p=chances)]
        if not len(candidates.by_kind.get(kind, ())):
            continue
        centre = np.array(np.unravel_index(rng.choice(candidates.by_kind[kind]), wm.shape))
        for lesion in _lesion_group(kind, centre, ventricle_distance, style, spacing, rng):
            voxels += _render(field, gate, lesion, spacing)
            placed += 1
    return field


@dataclass(frozen=True)
class _Lesion:
    centre: np.ndarray  # voxel index, float
    semi_axes_mm: np.ndarray
    rotation: np.ndarray  # columns: the ellipsoid axes in array-index space
    bumps: np.ndarray  # (K, 4): wave vector and phase of the radius perturbation
    roughness: float
    t2_strength: float
    t1_strength: float
    enhancement: float
    ring: bool


def _candidates(
    wm: np.ndarray, ventricle_distance: np.ndarray, spacing: float, infratentorial: np.ndarray | None = None
) -> _Candidates:
    depth = ndi.distance_transform_edt(wm >= 0.5) * spacing
    firm = wm >= 0.6
    supratentorial = True if infratentorial is None else ~infratentorial
    by_kind = {
        "periventricular": np.flatnonzero(firm & (ventricle_distance >= 1.0) & (ventricle_distance <= 7.0)),
        "deep": np.flatnonzero((depth >= max(3.0, spacing)) & (ventricle_distance > 10.0) & supratentorial),
        "juxtacortical": np.flatnonzero(
            firm & (depth <= max(2.5, spacing)) & (ventricle_distance > 15.0) & supratentorial
        ),
    }
    if infratentorial is not None:
        by_kind["infratentorial"] = np.flatnonzero(firm & infratentorial)
    return _Candidates(by_kind)


def _lesion_group(
    kind: str,
    centre: np.ndarray,
    ventricle_distance: np.ndarray,
    style: LesionStyle,
    spacing: float,
    rng: np.random.Generator,
) -> list[_Lesion]:
    """One lesion, or for periventricular ones sometimes a cluster spread along the ventricle wall."""
    low, high = style.radius_mm
    if kind in ("juxtacortical", "infratentorial"):
        high = min(high, 3.0)
    radius = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    if kind != "periventricular":
        return [_make_lesion(centre, radius, rng.uniform(1.0, 1.7), _random_rotation(rng), rng)]
    normal = _gradient_direction(ventricle_distance, centre, rng)
    rotation = _rotation_with_axis(normal, rng)
    lesions = [_make_lesion(centre, radius, rng.uniform(1.5, 2.6), rotation, rng)]
    if rng.random() < style.cluster_chance:
        for _ in range(rng.integers(2, 5)):
            tangent = rotation[:, 1:] @ rng.standard_normal(2)
            tangent /= np.linalg.norm(tangent) + 1e-9
            offset = tangent * radius * rng.uniform(1.0, 2.2) / spacing
            size = radius * rng.uniform(0.6, 1.1)
            lesions.append(_make_lesion(centre + offset, size, rng.uniform(1.3, 2.4), rotation, rng))
    return lesions


def _make_lesion(
    centre: np.ndarray, radius: float, elongation: float, rotation: np.ndarray, rng: np.random.Generator
) -> _Lesion:
    """An ovoid of equivalent radius `radius` (mm), `elongation` times longer along rotation[:, 0]."""
    semi_axes = radius * np.array([elongation ** (2 / 3), elongation ** (-1 / 3), elongation ** (-1 / 3)])
    semi_axes[1:] *= rng.uniform(0.8, 1.25, size=2)
    bumps = np.concatenate([rng.normal(0.0, 1.8, size=(6, 3)), rng.uniform(0, 2 * np.pi, size=(6, 1))], axis=1)
    enhancing = rng.random() < 0.12
    return _Lesion(
        centre=np.asarray(centre, dtype=np.float64),
        semi_axes_mm=semi_axes,
        rotation=rotation,
        bumps=bumps,
        roughness=rng.uniform(0.1, 0.3),
        t2_strength=rng.uniform(0.7, 1.2),
        t1_strength=rng.uniform(0.2, 1.0),
        enhancement=rng.uniform(0.6, 1.0) if enhancing else 0.0,
        ring=bool(rng.random() < 0.4),
    )


def _render(field: LesionField, gate: np.ndarray, lesion: _Lesion, spacing: float) -> int:
    """Draw one lesion into `field` (max of fractions); return the change in mask voxels."""
    reach = lesion.semi_axes_mm.max() * (1.0 + lesion.roughness) / spacing + 1.5
    low = np.maximum(np.floor(lesion.centre - reach).astype(int), 0)
    high = np.minimum(np.ceil(lesion.centre + reach).astype(int) + 1, gate.shape)
    if np.any(high <= low):
        return 0
    box = tuple(slice(a, b) for a, b in zip(low, high))
    offsets = np.stack(
        np.meshgrid(*(np.arange(a, b) - c for a, b, c in zip(low, high, lesion.centre)), indexing="ij"), axis=-1
    )
    local = (offsets * spacing) @ lesion.rotation / lesion.semi_axes_mm  # unit-sphere coordinates
    waves = np.sin(local @ lesion.bumps[:, :3].T + lesion.bumps[:, 3]).sum(axis=-1) * np.sqrt(2 / len(lesion.bumps))
    rho = np.linalg.norm(local, axis=-1) / (1.0 + lesion.roughness * np.clip(waves, -2.0, 2.0))
    # The rim ramp is at least _RIM_MM wide, so lesions fade into a faint halo as real ones do.
    rim = max(spacing, _RIM_MM)
    membership = np.clip(0.5 + (1.0 - rho) * lesion.semi_axes_mm.min() / rim, 0.0, 1.0) * gate[box]
    core = 0.7 + 0.3 * np.clip(2.0 * (1.0 - rho), 0.0, 1.0)  # centres are brighter than rims
    old = field.fraction[box]
    wins = membership > old
    before = int(np.count_nonzero(old >= 0.5))
    field.fraction[box] = np.where(wins, membership, old)
    field.t2_strength[box] = np.where(wins, lesion.t2_strength * core, field.t2_strength[box])
    field.t1_strength[box] = np.where(wins, lesion.t1_strength * core, field.t1_strength[box])
    enhancement = lesion.enhancement * (np.clip((rho - 0.5) / 0.3, 0.0, 1.0) if lesion.ring else 1.0)
    field.enhancement[box] = np.where(wins, enhancement, field.enhancement[box])
    return int(np.count_nonzero(field.fraction[box] >= 0.5)) - before


def _gradient_direction(distance: np.ndarray, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit direction of increasing ventricle distance at `centre`: the normal to the ventricle wall."""
    gradient = np.zeros(3)
    for axis in range(3):
        step = np.zeros(3, dtype=int)
        step[axis] = 1
        ahead = np.minimum(centre + step, np.array(distance.shape) - 1)
        behind = np.maximum(centre - step, 0)
        gradient[axis] = distance[tuple(ahead)] - distance[tuple(behind)]
    norm = np.linalg.norm(gradient)
    return gradient / norm if norm > 1e-6 else _random_rotation(rng)[:, 0]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _rotation_with_axis(axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An orthonormal basis whose first column is `axis`, the others at a random angle around it."""
    basis = np.column_stack([axis, rng.standard_normal((3, 2))])
    q, r = np.linalg.qr(basis)
    return q * np.sign(np.diag(r))
