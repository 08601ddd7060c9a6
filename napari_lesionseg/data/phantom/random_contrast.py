"""Per-subject, per-channel contrasts of the training generator, and what the scanner does to the image after.

Realistic contrasts draw each tissue's mean relative to white matter from ranges that contain real
scans (measured with `evaluation.tissue_ratios` on sub-p26; see docs/TRAINING.md): on FLAIR the
CSF is dark, grey / white matter 1.05-1.5, and a lesion's full-strength intensity 1.25-2.7. Lesions
render at 70-120 % strength with dimmer rims, so the measured lesion / white-matter median is lower:
about 1.1-1.95 over 20 subjects. In `FAINT_LESION_SHARE` of FLAIRs the lesion is barely brighter
than the cortex. `RANDOM_CONTRAST_SHARE` of subjects instead get fully random contrasts on every
channel, as SynthSeg trains, so the network cannot rely on one recipe.

After rendering (`contrast.render_modality`: partial volume, a smooth bias field, Rician noise) a
subject may get a receive-coil bias (bright periphery), a gamma and winsorising. Every channel then gets
a fine tissue texture and the smoothing of interpolation (`texture_and_resampling`): the generator renders
on the model's grid, while a real scan is reconstructed, registered and resampled onto it, so its white
matter varies by a few per cent over a few mm and its noise is correlated between neighbouring voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_lesionseg.data.phantom.contrast import TISSUE_INTENSITY, ContrastProfile

__all__ = [
    "FAINT_LESION_SHARE",
    "RANDOM_CONTRAST_SHARE",
    "REALISTIC_RANGES",
    "ScannerDraw",
    "draw_profile",
    "draw_scanner",
    "finish_image",
    "texture_and_resampling",
]

#: Share of subjects whose every channel gets a fully random contrast (SynthSeg-style).
RANDOM_CONTRAST_SHARE = 0.25
#: Share of realistic FLAIRs whose lesions are barely brighter than the cortex.
FAINT_LESION_SHARE = 0.3
#: Realistic ranges, relative to white matter: tissue means and the full-strength lesion intensity.
REALISTIC_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "FLAIR": {"gm": (1.05, 1.5), "csf": (0.05, 0.5), "lesion": (1.25, 2.7)},
    "T1w": {"gm": (0.55, 0.85), "csf": (0.12, 0.45), "lesion": (0.25, 0.9)},
    "T2w": {"gm": (1.1, 1.6), "csf": (1.8, 4.5), "lesion": (1.5, 3.0)},
    "PDw": {"gm": (1.03, 1.35), "csf": (0.9, 1.6), "lesion": (1.15, 1.8)},
    "T1c": {"gm": (0.55, 0.85), "csf": (0.12, 0.45), "lesion": (0.25, 0.9)},
}
#: Noise standard deviation relative to white matter, realistic and random subjects.
_NOISE = {"realistic": (0.01, 0.06), "random": (0.005, 0.1)}
#: Fine tissue texture: relative standard deviation and correlation length (mm, a Gaussian's sigma) of a
#: multiplicative field.
TEXTURE_STD = (0.01, 0.1)
TEXTURE_SCALE_MM = (0.75, 4.0)
#: Gaussian sigma (voxels) of the interpolation that brought the channel onto the model's grid.
RESAMPLING_SIGMA = (0.0, 0.8)
#: Smallest lesion-to-white-matter difference on a random FLAIR, so a lesion is never invisible on every channel.
_RANDOM_FLAIR_LESION_MIN = 0.2


@dataclass(frozen=True)
class ScannerDraw:
    """What the scanner and the preprocessing do to every channel of one subject."""

    random_contrast: bool
    bias_corrected: bool
    #: strength of the receive-coil term (periphery brighter), 0 for none.
    coil: float
    winsorise: bool
    integer: bool


def draw_scanner(rng: np.random.Generator) -> ScannerDraw:
    """Draw one subject's scanner: random or realistic contrast, bias correction, coil bias, storage."""
    random_contrast = bool(rng.random() < RANDOM_CONTRAST_SHARE)
    bias_corrected = bool(rng.random() < 0.45)
    coil = 0.0 if bias_corrected or rng.random() < 0.5 else float(rng.uniform(0.1, 0.6))
    return ScannerDraw(
        random_contrast=random_contrast,
        bias_corrected=bias_corrected,
        coil=coil,
        winsorise=bool(rng.random() < 0.3),
        integer=bool(rng.random() < 0.55),
    )


def draw_profile(modality: str, scanner: ScannerDraw, rng: np.random.Generator) -> ContrastProfile:
    """One channel's contrast: tissue and lesion intensities, noise and bias for `contrast.render_modality`."""
    table = _random_table(modality, rng) if scanner.random_contrast else _realistic_table(modality, rng)
    lesion = table.pop("lesion")
    noise = _NOISE["random" if scanner.random_contrast else "realistic"]
    sigma = float(rng.uniform(*noise))
    bias = float(rng.uniform(0.0, 0.04) if scanner.bias_corrected else rng.uniform(0.05, 0.3))
    return ContrastProfile(tissue={modality: table}, lesion={modality: lesion}, noise=(sigma, sigma), bias_std=bias)


def finish_image(
    image: np.ndarray,
    brain_distance: np.ndarray,
    scanner: ScannerDraw,
    rng: np.random.Generator,
) -> np.ndarray:
    """Coil bias (brighter towards the head's surface), gamma and winsorising of one rendered channel.

    Args:
        image: the rendered channel (non-negative).
        brain_distance: distance (mm) of every voxel from the brain's centre, for the coil term.
        scanner: the subject's scanner.
        rng: this channel's randomness (drawn whether used or not, so the draws stay aligned).
    """
    gamma = float(np.exp(rng.normal(0.0, 0.3 if scanner.random_contrast else 0.06)))
    quantile = float(rng.uniform(99.0, 99.9))
    image = image.astype(np.float32)
    if scanner.coil > 0:
        image = image * np.exp(scanner.coil * (brain_distance / 80.0) ** 2).astype(np.float32)
    level = float(np.percentile(image, 99.5)) or 1.0
    image = (level * (np.maximum(image, 0.0) / level) ** gamma).astype(np.float32)
    if scanner.winsorise:
        image = np.minimum(image, np.float32(np.percentile(image, quantile)))
    if scanner.integer:
        image = np.minimum(np.round(image), np.iinfo(np.int16).max)
    return image.astype(np.float32)


def texture_and_resampling(
    image: np.ndarray, spacing: float, scanner: ScannerDraw, rng: np.random.Generator
) -> np.ndarray:
    """A fine multiplicative tissue texture, then a Gaussian blur as interpolation onto the grid leaves.

    Draws from `rng` after `finish_image` (and the texture's count depends on the grid), so every
    earlier draw of a seed stays as it was.
    """
    std = float(rng.uniform(*TEXTURE_STD))
    scale_mm = float(rng.uniform(*TEXTURE_SCALE_MM))
    sigma = float(rng.uniform(*RESAMPLING_SIGMA))
    textured = image * (1.0 + std * _unit_field(image.shape, scale_mm / spacing, rng))
    smoothed = ndi.gaussian_filter(np.maximum(textured, 0.0), sigma) if sigma > 0.05 else textured
    if scanner.integer:
        smoothed = np.minimum(np.round(smoothed), np.iinfo(np.int16).max)
    return smoothed.astype(np.float32)


def _unit_field(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """White noise blurred by `sigma` voxels, rescaled to unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _realistic_table(modality: str, rng: np.random.Generator) -> dict[str, float]:
    """Brain tissues and lesion from REALISTIC_RANGES; scalp tissues the phantom's, each scaled by up to ~25 %."""
    table = {name: value * float(np.exp(rng.normal(0.0, 0.15))) for name, value in TISSUE_INTENSITY[modality].items()}
    ranges = REALISTIC_RANGES[modality]
    table.update({name: float(rng.uniform(*bounds)) for name, bounds in ranges.items()})
    table["wm"] = 1.0
    faint = rng.random() < FAINT_LESION_SHARE
    if modality == "FLAIR" and faint:
        table["lesion"] = table["gm"] + float(rng.uniform(0.05, 0.3))
    return table


def _random_table(modality: str, rng: np.random.Generator) -> dict[str, float]:
    """Every tissue and the lesion uniform in [0.03, 1] (white matter too); FLAIR lesions differ from white matter."""
    table = {name: float(rng.uniform(0.03, 1.0)) for name in TISSUE_INTENSITY[modality]}
    table["lesion"] = float(rng.uniform(0.03, 1.0))
    for _ in range(20):  # bounded: the draws stay a fixed function of the seed
        if modality != "FLAIR" or abs(table["lesion"] - table["wm"]) >= _RANDOM_FLAIR_LESION_MIN * table["wm"]:
            break
        table["lesion"] = float(rng.uniform(0.03, 1.0))
    return table
