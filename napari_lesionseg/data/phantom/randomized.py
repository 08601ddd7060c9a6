"""The randomised training generator: subjects that vary as real scans do, reproducible from a seed.

The phantom (`make_phantom`) stays the sample and demo data; training draws from this generator.
Per subject it draws, each from its own random stream:

* anatomy (`folded`): a folded cortical ribbon 2-4 mm thick with sulcal CSF, warps at three scales,
  atrophy (wider sulci, larger ventricles), MNI-registered (size 0.82-1.05) or native pose and size (0.8-1.2);
* lesions (`lesions.place_lesions` with a `LesionStyle`): periventricular ovoids perpendicular to the
  ventricles, juxtacortical, deep white-matter and infratentorial ones, confluent at high load;
  3 mm^3 lesions to 50 mL loads, the very-low load (a few small lesions) in 30 % of subjects;
* contrast (`random_contrast`): per channel tissue means from realistic ranges, or fully random in a
  quarter of the subjects; bias fields (or none: bias-corrected), coil bias, noise, gamma, a fine
  tissue texture and the smoothing of interpolation onto the model's grid;
* modalities: FLAIR always, T1w in 90 %, T2w in 70 %, T1c in 35 %, PDw in 30 %;
* acquisition: half the subjects have a 2-D protocol, whose FLAIR / T2w / PDw (and sometimes T1w)
  are 3-5 mm slices along one axis (a Gaussian slice profile, sampled and interpolated back onto the
  grid, as model space sees them); with skull, defaced or skull-stripped; integer or float storage.
  A stripper either cuts at the cortex (`pial_mask`, 60 %: the grey-matter ribbon touches the zero
  background, from 1 mm inside to 1 mm outside it) or keeps the CSF around the brain (`brain_mask`, half
  of these leaving 0-3 mm of CSF and dura).

Every image, the mask and the tissue maps share one grid (the subject's, in canonical S, P, L
order): the training code reads them as it reads resampled model-space inputs.

Example:
    >>> subject = make_training_subject(seed=12, spacing=1.5)  # doctest: +SKIP
    >>> sorted(subject.images)  # doctest: +SKIP
    ['FLAIR', 'T1w', 'T2w']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.constants import MODALITIES
from napari_lesionseg.data.phantom.acquisition import SLICE_AXES, brain_mask, pial_mask
from napari_lesionseg.data.phantom.anatomy import canonical_grid, load_template
from napari_lesionseg.data.phantom.contrast import render_modality
from napari_lesionseg.data.phantom.folded import make_folded_anatomy
from napari_lesionseg.data.phantom.lesions import LesionStyle, place_lesions
from napari_lesionseg.data.phantom.random_contrast import (
    ScannerDraw,
    draw_profile,
    draw_scanner,
    finish_image,
    texture_and_resampling,
)
from napari_lesionseg.data.phantom.subject import Phantom, _check_seed, _summarise, check_spacing
from napari_lesionseg.errors import InvalidInputError

__all__ = ["MODALITY_CHANCE", "TRAINING_LOADS", "TrainingDraw", "draw_training_subject", "make_training_subject"]

#: Chance that a subject has each modality.
MODALITY_CHANCE: dict[str, float] = {"FLAIR": 1.0, "T1w": 0.9, "T2w": 0.7, "PDw": 0.3, "T1c": 0.35}
#: Load categories: (chance, lesion volume range in mL drawn log-uniformly, lesion style).
_LESION_KINDS = {"periventricular": 0.4, "deep": 0.25, "juxtacortical": 0.2, "infratentorial": 0.15}
TRAINING_LOADS: dict[str, tuple[float, tuple[float, float], LesionStyle]] = {
    "very_low": (0.3, (0.01, 0.5), LesionStyle((0.9, 3.0), 0.0, _LESION_KINDS)),
    "low": (0.25, (0.5, 3.0), LesionStyle((1.0, 4.0), 0.1, _LESION_KINDS)),
    "medium": (0.25, (3.0, 12.0), LesionStyle((1.2, 5.5), 0.3, _LESION_KINDS)),
    "high": (0.2, (12.0, 50.0), LesionStyle((1.5, 7.5), 0.6, _LESION_KINDS)),
}
#: Chance of a 2-D protocol, and then of each modality being acquired as thick slices.
_TWO_D_CHANCE = 0.5
_THICK_CHANCE = {"FLAIR": 0.8, "T1w": 0.2, "T2w": 0.9, "PDw": 0.9, "T1c": 0.3}
_SLICE_MM = (3.0, 5.0)
_SLICE_AXIS_CHANCE = {"axial": 0.6, "coronal": 0.2, "sagittal": 0.2}
_SKULL_CHANCE = {"skull": 0.4, "defaced": 0.2, "stripped": 0.4}
#: How a skull stripper draws its boundary: at the cortex, or around the CSF that surrounds the brain.
_STRIPPER_CHANCE = {"pial": 0.6, "hull": 0.4}
_PIAL_OFFSET_MM = (-1.0, 1.0)
#: Blur (voxels, Gaussian sigma) of the stripped edge: a mask applied on a finer grid and resampled is soft.
_STRIP_EDGE_SIGMA = (0.0, 0.8)
#: Independent random streams, so forcing one draw (modalities, contrast) changes nothing else.
_STREAMS = ("subject", "anatomy", "lesions", "scanner", *MODALITIES, *(f"{m}-finish" for m in MODALITIES))
#: Mixed into the seed so a training subject never repeats the phantom of the same seed.
_GENERATOR_TAG = 0x7A11


@dataclass(frozen=True)
class TrainingDraw:
    """What one training subject is: the choices drawn from its seed (after any overrides)."""

    modalities: tuple[str, ...]
    load_category: str
    target_ml: float
    registered: bool
    atrophy: float
    #: modalities acquired as 2-D thick slices, their thickness (mm) and the axis they cut across.
    thick: tuple[str, ...]
    slice_mm: float
    slice_axis: str
    skull: str
    scanner: ScannerDraw
    #: how far (mm) a skull stripper's mask reaches beyond its boundary (negative: inside it), 0 for a clean one.
    strip_margin_mm: float = 0.0
    #: the stripper's boundary: "pial" (`pial_mask`, at the cortex) or "hull" (`brain_mask`, CSF kept).
    stripper: str = "hull"
    #: Gaussian sigma (voxels) of the stripped edge's partial volume, 0 for a hard edge.
    strip_edge_sigma: float = 0.0


def draw_training_subject(
    seed: int,
    spacing: float = 1.5,
    *,
    modalities: Sequence[str] | None = None,
    random_contrast: bool | None = None,
) -> TrainingDraw:
    """The choices for subject `seed`; `modalities` and `random_contrast` override their draws (None: drawn)."""
    _check_seed(seed)
    rng = _streams(seed)["subject"]
    drawn = tuple(m for m in MODALITIES if rng.random() < MODALITY_CHANCE[m])
    category = _pick(rng, {name: chance for name, (chance, _, _) in TRAINING_LOADS.items()})
    low, high = TRAINING_LOADS[category][1]
    target_ml = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    registered = bool(rng.random() < 0.6)
    atrophy = float(rng.beta(1.2, 2.5))
    two_d = rng.random() < _TWO_D_CHANCE
    thick_draws = {m: rng.random() < _THICK_CHANCE[m] for m in MODALITIES}
    slice_mm = float(rng.uniform(*_SLICE_MM))
    slice_axis = _pick(rng, _SLICE_AXIS_CHANCE)
    skull = _pick(rng, _SKULL_CHANCE)
    strip_margin_mm = float(rng.uniform(0.0, 3.0)) if rng.random() < 0.5 else 0.0
    stripper = _pick(rng, _STRIPPER_CHANCE)
    pial_offset_mm = float(rng.uniform(*_PIAL_OFFSET_MM))
    strip_edge_sigma = float(rng.uniform(*_STRIP_EDGE_SIGMA))
    scanner = draw_scanner(_streams(seed)["scanner"])
    if random_contrast is not None:
        scanner = dataclasses.replace(scanner, random_contrast=bool(random_contrast))
    chosen = drawn if modalities is None else _checked_modalities(modalities)
    factor = max(1, round(slice_mm / spacing))
    thick = tuple(m for m in chosen if two_d and thick_draws[m] and factor > 1)
    return TrainingDraw(
        modalities=chosen,
        load_category=category,
        target_ml=round(target_ml, 4),
        registered=registered,
        atrophy=round(atrophy, 3),
        thick=thick,
        slice_mm=factor * float(spacing),
        slice_axis=slice_axis,
        skull=skull,
        scanner=scanner,
        strip_margin_mm=round(pial_offset_mm if stripper == "pial" else strip_margin_mm, 2),
        stripper=stripper,
        strip_edge_sigma=round(strip_edge_sigma, 2),
    )


def make_training_subject(
    seed: int,
    spacing: float = 1.5,
    *,
    modalities: Sequence[str] | None = None,
    random_contrast: bool | None = None,
) -> Phantom:
    """One randomised training subject, bit-identical for the same arguments.

    Args:
        seed: non-negative integer; the generator's subjects differ from the phantom's of the same seed.
        spacing: isotropic voxel size (mm), 0.75 to 8.
        modalities: force these modalities (None: drawn, `MODALITY_CHANCE`); nothing else changes.
        random_contrast: force fully random (True) or realistic (False) contrasts (None: drawn).

    Returns:
        A Phantom (`contrast` is "random" or "realistic", `file_dtype` "int16" or "float32"), every
        image on the mask's grid; `draw_training_subject` says what was drawn.
    """
    check_spacing(spacing)
    draw = draw_training_subject(seed, spacing, modalities=modalities, random_contrast=random_contrast)
    rngs = _streams(seed)
    template = load_template()
    grid, affine = canonical_grid(template, spacing)
    anatomy = make_folded_anatomy(
        template, grid, rngs["anatomy"], spacing, registered=draw.registered, atrophy=draw.atrophy
    )
    style = TRAINING_LOADS[draw.load_category][2]
    lesions = place_lesions(
        anatomy.fractions["wm"], anatomy.ventricle_distance, spacing, draw.target_ml, draw.load_category,
        rngs["lesions"], style=style, infratentorial=anatomy.infratentorial,
    )  # fmt: skip
    centre_distance = _distance_from_brain_centre(anatomy.fractions, spacing)
    images = {}
    for modality in draw.modalities:
        profile = draw_profile(modality, draw.scanner, rngs[modality])
        image = render_modality(modality, anatomy.fractions, lesions, grid, rngs[modality], False, profile)
        if modality in draw.thick:
            image = _thick_slices(image, SLICE_AXES[draw.slice_axis], round(draw.slice_mm / spacing))
        finish = rngs[f"{modality}-finish"]
        image = finish_image(image, centre_distance, draw.scanner, finish)
        images[modality] = texture_and_resampling(image, spacing, draw.scanner, finish)
    mask = (lesions.fraction >= 0.5).astype(np.uint8)
    tissues = {name: anatomy.fractions[name] for name in ("wm", "gm", "csf")}
    tissues["lesion"] = lesions.fraction
    subject = Phantom(
        images=images,
        mask=mask,
        affine=affine,
        tissues=tissues,
        lesion_load=_summarise(mask, spacing, draw.load_category, draw.target_ml),
        seed=seed,
        spacing=float(spacing),
        file_dtype="int16" if draw.scanner.integer else "float32",
        contrast="random" if draw.scanner.random_contrast else "realistic",
    )
    return _strip(subject, draw, anatomy.face)


def _streams(seed: int) -> dict[str, np.random.Generator]:
    sequences = np.random.SeedSequence([_GENERATOR_TAG, seed]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, sequences)}


def _pick(rng: np.random.Generator, chances: dict[str, float]) -> str:
    names = list(chances)
    return names[rng.choice(len(names), p=list(chances.values()))]


def _checked_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown or not modalities:
        raise InvalidInputError(
            f"cannot generate modalities {list(modalities)}: expected some of {', '.join(MODALITIES)}"
        )
    return tuple(m for m in MODALITIES if m in modalities)


def _thick_slices(image: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """A 2-D acquisition of `factor`-voxel slices across `axis` (Gaussian profile), interpolated back onto the grid."""
    profile = ndi.gaussian_filter1d(image, sigma=factor / 2.355, axis=axis, mode="nearest")
    count = image.shape[axis]
    centres = np.arange(factor // 2, count, factor)
    slices = np.take(profile, centres, axis=axis)
    position = np.clip((np.arange(count) - centres[0]) / factor, 0.0, len(centres) - 1.0)
    below = np.minimum(np.floor(position).astype(int), len(centres) - 2) if len(centres) > 1 else np.zeros(count, int)
    weight = (position - below).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = -1
    weight = weight.reshape(shape)
    upper = np.minimum(below + 1, len(centres) - 1)
    return (np.take(slices, below, axis=axis) * (1 - weight) + np.take(slices, upper, axis=axis) * weight).astype(
        np.float32
    )


def _distance_from_brain_centre(fractions: dict[str, np.ndarray], spacing: float) -> np.ndarray:
    """Distance (mm) of every voxel from the brain's centre of mass."""
    brain = fractions["gm"] + fractions["wm"]
    centre = ndi.center_of_mass(brain)
    index = np.ogrid[tuple(slice(0, n) for n in brain.shape)]
    squared = sum(((i - c) * spacing) ** 2 for i, c in zip(index, centre))
    return np.sqrt(squared).astype(np.float32)


def _strip(subject: Phantom, draw: TrainingDraw, face: np.ndarray) -> Phantom:
    """Skull-strip (the stripper's boundary and margin) or deface the images as the subject's preprocessing did."""
    if draw.skull == "stripped":
        kept = _stripper_kept(subject, draw)
        weight = _soft_edge(kept, draw.strip_edge_sigma)
        images = {m: _stored(image * weight, draw.scanner.integer) for m, image in subject.images.items()}
        return dataclasses.replace(subject, images=images)
    if draw.skull == "defaced":
        images = {m: np.where(face, 0.0, image).astype(np.float32) for m, image in subject.images.items()}
        return dataclasses.replace(subject, images=images)
    return subject


def _stripper_kept(subject: Phantom, draw: TrainingDraw) -> np.ndarray:
    """The voxels a skull stripper keeps: its boundary moved out (margin > 0) or in (margin < 0) by the margin."""
    boundary = pial_mask(subject) if draw.stripper == "pial" else brain_mask(subject)
    if draw.strip_margin_mm > 0:
        return ndi.distance_transform_edt(~boundary, sampling=subject.spacing) <= draw.strip_margin_mm
    if draw.strip_margin_mm < 0:
        return ndi.distance_transform_edt(boundary, sampling=subject.spacing) > -draw.strip_margin_mm
    return boundary


def _soft_edge(kept: np.ndarray, sigma: float) -> np.ndarray:
    """The stripper's mask as a weight, blurred by `sigma` voxels (partial volume at the edge), 0 far outside."""
    if sigma <= 0:
        return kept.astype(np.float32)
    weight = ndi.gaussian_filter(kept.astype(np.float32), sigma)
    weight[weight < 0.02] = 0.0
    return weight


def _stored(image: np.ndarray, integer: bool) -> np.ndarray:
    """`image` as the scanner stores it: whole numbers for an integer scanner."""
    return (np.round(image) if integer else image).astype(np.float32)
