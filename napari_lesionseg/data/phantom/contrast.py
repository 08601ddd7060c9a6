"""MR contrast of the phantom: tissue intensities per modality, bias field, scanner scale, Rician noise.

Intensities are relative to white matter (1.0) and follow the usual appearance at 1.5-3 T:
FLAIR suppresses CSF and shows lesions bright, T1w shows white matter brighter than grey matter and
lesions dark, T2w and PDw show CSF and lesions bright, T1c adds gadolinium enhancement of some
lesions, the dura and the venous sinus. A `ContrastProfile` is one scanner's rendering of the same
anatomy: "default" is the table below; "low" is a second scanner (lower lesion-to-grey-matter
contrast on FLAIR, flatter T1w, more noise); "soft" a third (fainter lesions on every sequence,
stronger bias field), so a subject's seed gives the same head and lesions on every scanner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from napari_lesionseg.data.phantom._fields import Grid, smooth_field
from napari_lesionseg.data.phantom.lesions import LesionField
from napari_lesionseg.errors import InvalidInputError

__all__ = [
    "CONTRAST_PROFILES",
    "ENHANCED_INTENSITY",
    "LESION_INTENSITY",
    "TISSUE_INTENSITY",
    "ContrastProfile",
    "contrast_profile",
    "render_modality",
    "scanner_dtype",
]

#: Mean intensity of each tissue relative to white matter, per modality.
TISSUE_INTENSITY: dict[str, dict[str, float]] = {
    "FLAIR": {"wm": 1.0, "gm": 1.25, "csf": 0.13, "meninges": 0.2, "sinus": 0.1,
              "bone": 0.06, "marrow": 0.85, "muscle": 0.55, "fat": 0.95},
    "T1w": {"wm": 1.0, "gm": 0.66, "csf": 0.22, "meninges": 0.25, "sinus": 0.3,
            "bone": 0.06, "marrow": 1.15, "muscle": 0.6, "fat": 1.4},
    "T2w": {"wm": 1.0, "gm": 1.4, "csf": 3.3, "meninges": 2.6, "sinus": 0.25,
            "bone": 0.06, "marrow": 1.0, "muscle": 0.5, "fat": 1.25},
    "PDw": {"wm": 1.0, "gm": 1.22, "csf": 1.35, "meninges": 1.3, "sinus": 0.4,
            "bone": 0.1, "marrow": 1.15, "muscle": 0.75, "fat": 1.3},
    "T1c": {"wm": 1.0, "gm": 0.66, "csf": 0.22, "meninges": 0.9, "sinus": 1.9,
            "bone": 0.06, "marrow": 1.15, "muscle": 0.7, "fat": 1.4},
}  # fmt: skip
#: Intensity of a lesion at full strength, relative to white matter.
LESION_INTENSITY: dict[str, float] = {"FLAIR": 1.85, "T1w": 0.5, "T2w": 2.4, "PDw": 1.45, "T1c": 0.5}
#: Intensity of a fully enhancing lesion on T1c.
ENHANCED_INTENSITY = 1.6
#: The white-matter level of a scanner's output, drawn log-uniformly per subject and modality.
_WM_LEVEL = (80.0, 1400.0)
#: Noise standard deviation relative to white matter (SNR about 25 to 55).
_NOISE = (0.018, 0.04)


@dataclass(frozen=True)
class ContrastProfile:
    """One scanner's rendering: tissue and lesion intensities that differ from the default, noise and bias."""

    tissue: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    lesion: Mapping[str, float] = field(default_factory=dict)
    noise: tuple[float, float] = _NOISE
    bias_std: float = 0.12

    def tissue_intensity(self, modality: str) -> dict[str, float]:
        """Mean intensity of each tissue on `modality`, relative to white matter."""
        return {**TISSUE_INTENSITY[modality], **self.tissue.get(modality, {})}

    def lesion_intensity(self, modality: str) -> float:
        """A full-strength lesion's intensity on `modality`, relative to white matter."""
        return float(self.lesion.get(modality, LESION_INTENSITY[modality]))


#: The scanners `lesionseg sample --contrast` offers (lesion-to-grey-matter FLAIR contrast 0.48, 0.15, 0.28).
CONTRAST_PROFILES: dict[str, ContrastProfile] = {
    "default": ContrastProfile(),
    "low": ContrastProfile(
        tissue={"FLAIR": {"gm": 1.3}, "T1w": {"gm": 0.8, "csf": 0.4}},
        lesion={"FLAIR": 1.5, "T1w": 0.75},
        noise=(0.04, 0.07),
    ),
    "soft": ContrastProfile(
        tissue={"FLAIR": {"gm": 1.2, "csf": 0.25}, "T2w": {"gm": 1.3}},
        lesion={"FLAIR": 1.55, "T1w": 0.65, "T2w": 1.9, "PDw": 1.3},
        noise=(0.03, 0.055),
        bias_std=0.2,
    ),
}


def contrast_profile(name: str) -> ContrastProfile:
    """The profile called `name` (a `CONTRAST_PROFILES` key)."""
    if name not in CONTRAST_PROFILES:
        raise InvalidInputError(f"unknown contrast profile {name!r}: expected one of {', '.join(CONTRAST_PROFILES)}")
    return CONTRAST_PROFILES[name]


def render_modality(
    modality: str,
    fractions: dict[str, np.ndarray],
    lesions: LesionField,
    grid: Grid,
    rng: np.random.Generator,
    integer: bool,
    profile: ContrastProfile | None = None,
) -> np.ndarray:
    """The image of one modality: tissue mixture, lesions, bias field, scanner scale and Rician noise.

    Args:
        modality: a key of TISSUE_INTENSITY.
        fractions: tissue fractions per voxel (partial volume mixes the tissue intensities).
        lesions: lesion fractions and contrasts, mixed in the same way.
        grid: the voxel grid (for the smooth bias field and texture).
        rng: this modality's own source of randomness.
        integer: round to whole numbers, as scanners that store int16 do.
        profile: the scanner's contrast (None: "default").

    Returns:
        float32 image, non-negative.
    """
    profile = profile or CONTRAST_PROFILES["default"]
    clean = _tissue_mixture(modality, fractions, lesions, profile)
    bias = np.exp(smooth_field(grid, rng, knot_spacing_mm=90.0, std=profile.bias_std))
    texture = 1.0 + smooth_field(grid, rng, knot_spacing_mm=10.0, std=0.025)
    # Python floats: NumPy 2 would promote the float32 images to float64 with NumPy scalars.
    level = float(np.exp(rng.uniform(*np.log(_WM_LEVEL))))
    sigma = level * float(rng.uniform(*profile.noise))
    signal = clean * bias * texture * level
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    imaginary = rng.standard_normal(signal.shape, dtype=np.float32) * sigma
    image = np.sqrt(real * real + imaginary * imaginary)
    if integer:
        image = np.minimum(np.round(image), np.iinfo(np.int16).max)
    return image.astype(np.float32)


def scanner_dtype(rng: np.random.Generator) -> str:
    """How this subject's scanner stores images: "int16" (most) or "float32"."""
    return "int16" if rng.random() < 0.6 else "float32"


def _tissue_mixture(
    modality: str, fractions: dict[str, np.ndarray], lesions: LesionField, profile: ContrastProfile
) -> np.ndarray:
    """Noise-free intensity: tissues mixed by fraction, lesions mixed over them by lesion fraction."""
    table = profile.tissue_intensity(modality)
    tissue = sum(fractions[name] * value for name, value in table.items())
    wm, full = table["wm"], profile.lesion_intensity(modality)
    if modality in ("T1w", "T1c"):
        lesion = wm + lesions.t1_strength * (full - wm)
    else:
        lesion = wm + lesions.t2_strength * (full - wm)
    if modality == "T1c":
        lesion = lesion + lesions.enhancement * (ENHANCED_INTENSITY - lesion)
    return (tissue * (1.0 - lesions.fraction) + lesion * lesions.fraction).astype(np.float32)
