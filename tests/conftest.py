"""Shared test helpers: small synthetic multimodal MS subjects written as real NIfTI files.

Plain functions (importable as ``from conftest import write_subject``) plus fixtures wrapping them:

* `make_affine(spacing, origin, axcodes)`: a voxel -> RAS+ affine whose array axes point to `axcodes`.
* `synthetic_anatomy(shape, seed)`: RAS-ordered ``{modality: float32 array}`` and a uint8 lesion
  mask: an ellipsoidal head, brain, ventricles and off-centre (asymmetric) lesions.
* `reorient(data, affine, axcodes)`: the same anatomy stored with array axes along `axcodes`.
* `write_nifti(path, data, affine)`: one file.
* `write_subject(tmp_path, ...)`: a subject folder ``<name>/<name>_<MODALITY>.nii.gz`` (+ mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from napari_lesionseg.constants import CORE_MODALITIES, MASK_SUFFIX

#: Tissue intensities per modality (background, brain, ventricles, lesion), in arbitrary "scanner" units.
_CONTRASTS: dict[str, tuple[float, float, float, float]] = {
    "FLAIR": (5.0, 400.0, 120.0, 900.0),
    "T1w": (8.0, 700.0, 200.0, 350.0),
    "T2w": (6.0, 300.0, 900.0, 800.0),
    "PDw": (7.0, 500.0, 650.0, 750.0),
    "T1c": (8.0, 720.0, 210.0, 600.0),
}


def requires_cuda(test):
    """Mark a test that needs a CUDA GPU: skipped without one, selected on a GPU machine with ``-m cuda``."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    return pytest.mark.cuda(skip(test))


#: The smallest FC-DenseNet the models module builds (8^3 patches fit its poolings): for tests that
#: check geometry and plumbing, not accuracy.
TINY_FCDENSENET = {
    "initial_convs": 1,
    "initial_features": 4,
    "dense_blocks_down": 1,
    "layers_per_block": 1,
    "growth_rate": 4,
    "multiscale_features": 4,
    "patch_size": [8, 8, 8],
}


#: A compact network of a few hundred parameters on 8^3 patches: the fine-tune tests' parent.
TINY_FINETUNE = {
    "input_stride2": False, "dense_blocks_down": 1, "layers_per_block": 1, "growth_rate": 2,
    "initial_features": 4, "multiscale_features": 2, "bottleneck_factor": 1, "patch_size": [8, 8, 8],
}  # fmt: skip


def make_affine(
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (-10.0, -12.0, -9.0),
    axcodes: str | Sequence[str] = "RAS",
) -> np.ndarray:
    """Affine with voxel size `spacing` along the array axes, which point to `axcodes` (e.g. "LPS")."""
    ornt = axcodes2ornt(tuple(axcodes))
    affine = np.zeros((4, 4))
    for axis, (world, sign) in enumerate(ornt):
        affine[int(world), axis] = sign * spacing[axis]
    affine[:3, 3] = origin
    affine[3, 3] = 1.0
    return affine


def synthetic_anatomy(shape: Sequence[int] = (20, 24, 18), seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """RAS-ordered images for every known modality and the lesion mask, with mild noise."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.9, 0.95, 0.85])[:, None, None, None]) ** 2).sum(axis=0))
    brain = radius < 0.8
    ventricles = np.sqrt(((grid - np.array([0.1, 0.0, 0.05])[:, None, None, None]) ** 2 / 0.05).sum(axis=0)) < 1
    lesion = np.zeros(shape, dtype=bool)
    for centre, r in (((0.35, 0.3, 0.2), 0.18), ((-0.3, -0.25, 0.35), 0.14), ((0.2, -0.4, -0.3), 0.12)):
        lesion |= np.sqrt(((grid - np.array(centre)[:, None, None, None]) ** 2).sum(axis=0)) < r
    lesion &= brain & ~ventricles
    images = {}
    for modality, (background, tissue, csf, bright) in _CONTRASTS.items():
        image = np.where(radius < 0.95, tissue * 0.6, background)  # scalp
        image = np.where(brain, tissue, image)
        image = np.where(ventricles, csf, image)
        image = np.where(lesion, bright, image)
        images[modality] = (image + rng.normal(0, 0.03 * tissue, size=shape)).astype(np.float32)
    return images, lesion.astype(np.uint8)


#: Voxel size of `synthetic_head` (mm): coarse, so a whole head is 56^3 voxels.
HEAD_SPACING_MM = 3.0


def _head_offsets_mm(shape: int = 56) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World offsets (mm) of every voxel of a cube of `shape` voxels from its centre."""
    axis = (np.arange(shape) - (shape - 1) / 2) * HEAD_SPACING_MM
    return np.meshgrid(axis, axis, axis, indexing="ij")


def head_radius_mm() -> np.ndarray:
    """Distance (mm) of every voxel of `synthetic_head` from the head's centre."""
    z, y, x = _head_offsets_mm()
    return np.sqrt(z**2 + y**2 + x**2)


def synthetic_head(scalp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A FLAIR-like head at `HEAD_SPACING_MM`: brain (r < 60 mm) with a dark ventricle, dark CSF and skull, a
    bright scalp (r 69-75 mm) joined to the brain by a thin bridge, as at the skull base; and each voxel's r."""
    r = head_radius_mm()
    flair = np.zeros(r.shape, np.float32)
    flair[r < 75] = 150.0 if scalp else 0.0  # scalp and fat, brighter than brain on FLAIR
    flair[r < 69] = 5.0  # skull
    flair[r < 63] = 10.0  # CSF
    flair[r < 60] = 100.0  # brain
    flair[r < 10] = 10.0  # a ventricle
    if scalp:
        z, y, x = _head_offsets_mm()
        flair[(x > 0) & (np.sqrt(z**2 + y**2) < 3.5) & (r >= 59) & (r < 70)] = 100.0
    return flair + np.random.default_rng(0).normal(0, 2, r.shape).astype(np.float32), r


def reorient(data: np.ndarray, affine: np.ndarray, axcodes: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy with its array axes pointing to `axcodes` (pure flips/permutations)."""
    transform = ornt_transform(io_orientation(affine), axcodes2ornt(tuple(axcodes)))
    return apply_orientation(data, transform), affine @ inv_ornt_aff(transform, data.shape)


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write one NIfTI-1 file (float/int voxels, sform and qform set from `affine`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data), make_affine() if affine is None else affine)
    image.header.set_qform(image.affine, code="scanner")
    image.header.set_sform(image.affine, code="scanner")
    nib.save(image, str(path))
    return path


def write_subject(
    tmp_path: str | Path,
    name: str = "sub-01",
    shape: Sequence[int] = (20, 24, 18),
    affine: np.ndarray | None = None,
    modalities: Sequence[str] = CORE_MODALITIES,
    with_mask: bool = True,
    *,
    axcodes: str | Sequence[str] | None = None,
    suffix: str = ".nii.gz",
    seed: int = 0,
) -> Path:
    """Write a subject folder ``tmp_path/<name>/`` with one file per modality and the lesion mask.

    Args:
        tmp_path: parent folder.
        name: subject name (folder and file prefix).
        shape: array shape in RAS voxel order (before any `axcodes` reorientation).
        affine: RAS-ordered affine of that array; `make_affine()` (1 mm, RAS) when None.
        modalities: which modalities to write.
        with_mask: also write ``<name>_label-lesion_mask``.
        axcodes: store the same anatomy with array axes along these codes (e.g. "LPS").
        suffix: ".nii.gz" or ".nii".
        seed: noise seed.

    Returns:
        The subject folder.
    """
    folder = Path(tmp_path) / name
    images, mask = synthetic_anatomy(shape, seed)
    affine = make_affine() if affine is None else affine
    volumes = {m: images[m] for m in modalities}
    if with_mask:
        volumes[MASK_SUFFIX] = mask
    for role, data in volumes.items():
        stored, stored_affine = (data, affine) if axcodes is None else reorient(data, affine, axcodes)
        write_nifti(folder / f"{name}_{role}{suffix}", stored, stored_affine)
    return folder


@pytest.fixture
def subject_dir(tmp_path: Path) -> Path:
    """A default four-modality subject with a mask, 1 mm RAS, written to tmp_path/sub-01."""
    return write_subject(tmp_path)


@pytest.fixture
def make_subject(tmp_path: Path):
    """`write_subject` bound to this test's tmp_path: ``make_subject(name="sub-02", axcodes="LPS")``."""

    def factory(**kwargs) -> Path:
        return write_subject(tmp_path, **kwargs)

    return factory
