"""One phantom subject: anatomy, lesions and images of every modality, reproducible from a seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.constants import CORE_MODALITIES, MODALITIES
from napari_lesionseg.data.phantom.anatomy import canonical_grid, load_template, make_anatomy
from napari_lesionseg.data.phantom.contrast import contrast_profile, render_modality, scanner_dtype
from napari_lesionseg.data.phantom.lesions import LESION_LOADS, place_lesions
from napari_lesionseg.errors import InvalidInputError

__all__ = ["LesionLoad", "Phantom", "check_spacing", "make_phantom", "resolve_lesion_load"]

#: Voxel sizes (mm) the phantom supports: finer grids need gigabytes, coarser ones lose the anatomy.
SPACING_RANGE = (0.75, 8.0)
#: Random streams of one subject, each independent so that adding T1c changes nothing else.
_STREAMS = ("anatomy", "lesions", "scanner", *MODALITIES)


@dataclass(frozen=True)
class LesionLoad:
    """What the lesion mask holds: its category, the volume aimed at and the volume obtained."""

    category: str
    target_ml: float
    volume_ml: float
    n_lesions: int  # connected components (26-connectivity)
    n_voxels: int


@dataclass
class Phantom:
    """A synthetic MS subject; arrays are in the canonical (S, P, L) order of docs/ARCHITECTURE.md.

    Attributes:
        images: modality -> float32 image (whole numbers when `file_dtype` is "int16").
        mask: uint8 reference lesion mask, 1 where the lesion fraction is at least 0.5.
        affine: 4x4 map from array indices to RAS+ world millimetres.
        tissues: "wm", "gm", "csf" fractions before lesions, and the "lesion" fraction, float32.
        lesion_load: summary of the mask.
        seed: the seed that reproduces this subject bit for bit.
        spacing: isotropic voxel size (mm) the phantom was made at.
        file_dtype: how the images are stored on disk: "int16" or "float32", as scanners differ.
        image_affines: the affine of each image on another grid than `affine` (thick slices, see
            `acquisition`); the others and the mask are on `affine`.
        contrast: the scanner's `contrast.CONTRAST_PROFILES` name.
    """

    images: dict[str, np.ndarray]
    mask: np.ndarray
    affine: np.ndarray
    tissues: dict[str, np.ndarray]
    lesion_load: LesionLoad
    seed: int
    spacing: float
    file_dtype: str
    image_affines: dict[str, np.ndarray] = field(default_factory=dict)
    contrast: str = "default"


def make_phantom(
    seed: int,
    spacing: float = 2.0,
    lesion_load: str | float | None = None,
    t1c: bool = False,
    contrast: str = "default",
) -> Phantom:
    """Make one subject: the MNI152 head deformed, MS lesions in its white matter, FLAIR/T1w/T2w/PDw.

    The same seed gives bit-identical arrays; different seeds give different heads, lesions,
    intensity scales, bias fields and noise.

    Args:
        seed: non-negative integer.
        spacing: isotropic voxel size in mm (0.75 to 8); the template is resampled to it.
        lesion_load: a category of LESION_LOADS ("very_low", "low", "medium", "high"), a lesion
            volume in mL, or None to take the category from the seed (seed % 4 cycles through them).
        t1c: also make a gadolinium-enhanced T1 (a few enhancing lesions, bright dura and sinus).
        contrast: the scanner (`contrast.CONTRAST_PROFILES`); the anatomy and lesions do not depend on it.

    Returns:
        The Phantom, with images for constants.CORE_MODALITIES (and "T1c" if asked for).

    Example:
        >>> phantom = make_phantom(seed=9001, spacing=2.0)
        >>> sorted(phantom.images), phantom.mask.dtype
        (['FLAIR', 'PDw', 'T1w', 'T2w'], dtype('uint8'))
    """
    _check_seed(seed)
    check_spacing(spacing)
    profile = contrast_profile(contrast)
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS)))))
    category, target_ml = resolve_lesion_load(lesion_load, seed, rngs["lesions"])
    template = load_template()
    grid, affine = canonical_grid(template, spacing)
    anatomy = make_anatomy(template, grid, rngs["anatomy"], spacing)
    wm = anatomy.fractions["wm"]
    lesions = place_lesions(wm, anatomy.ventricle_distance, spacing, target_ml, category, rngs["lesions"])
    file_dtype = scanner_dtype(rngs["scanner"])
    modalities = CORE_MODALITIES + (("T1c",) if t1c else ())
    images = {
        m: render_modality(m, anatomy.fractions, lesions, grid, rngs[m], integer=file_dtype == "int16", profile=profile)
        for m in modalities
    }
    mask = (lesions.fraction >= 0.5).astype(np.uint8)
    tissues = {name: anatomy.fractions[name] for name in ("wm", "gm", "csf")}
    tissues["lesion"] = lesions.fraction
    return Phantom(
        images=images,
        mask=mask,
        affine=affine,
        tissues=tissues,
        lesion_load=_summarise(mask, spacing, category, target_ml),
        seed=seed,
        spacing=float(spacing),
        file_dtype=file_dtype,
        contrast=contrast,
    )


def resolve_lesion_load(lesion_load: str | float | None, seed: int, rng: np.random.Generator) -> tuple[str, float]:
    """The load category and target lesion volume (mL) that `lesion_load` asks for."""
    categories = tuple(LESION_LOADS)
    if lesion_load is None:
        lesion_load = categories[seed % len(categories)]
    if isinstance(lesion_load, str):
        if lesion_load not in LESION_LOADS:
            raise InvalidInputError(
                f"unknown lesion load {lesion_load!r}: expected one of {', '.join(categories)} or a volume in mL"
            )
        low, high = LESION_LOADS[lesion_load]
        return lesion_load, float(np.exp(rng.uniform(np.log(low), np.log(high))))
    target = float(lesion_load)
    if not np.isfinite(target) or target < 0:
        raise InvalidInputError(f"lesion load {lesion_load!r} mL is not a volume: expected 0 or more")
    category = next((name for name, (_, high) in LESION_LOADS.items() if target <= high), categories[-1])
    return category, target


def _summarise(mask: np.ndarray, spacing: float, category: str, target_ml: float) -> LesionLoad:
    _, count = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    voxels = int(np.count_nonzero(mask))
    return LesionLoad(
        category=category,
        target_ml=round(target_ml, 4),
        volume_ml=voxels * spacing**3 / 1000.0,
        n_lesions=int(count),
        n_voxels=voxels,
    )


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"phantom seed {seed!r} is not usable: expected an integer >= 0")


def check_spacing(spacing: float) -> None:
    """Refuse a voxel size outside `SPACING_RANGE`."""
    low, high = SPACING_RANGE
    if not low <= float(spacing) <= high:
        raise InvalidInputError(f"phantom spacing {spacing} mm is out of range: expected {low} to {high} mm")
