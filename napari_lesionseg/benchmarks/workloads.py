"""The subjects `lesionseg bench` times, written to a temporary folder so that reading them is real.

* ``sample``: the packaged 2 mm sample subject (else a 2 mm phantom), four flips.
* ``1mm``: a 1 mm subject of about 200x230x190 voxels (the phantom at 1 mm when nilearn is
  installed, else a synthetic head of that size), without flips.
* ``paper``: the paper's MSSEG workload (Sec. III.C): a synthetic 5-channel 128x224x256 volume
  (an ellipsoidal "head" with noise), 64^3 patches on the padded grid, four flips.

Also the measured block (a corner of the grid when only some patches are timed) and what a
checkpoint of a randomly initialised network records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_lesionseg.constants import CORE_MODALITIES, MODALITIES
from napari_lesionseg.data.intensity import NORMALIZATION
from napari_lesionseg.engine.checkpoints import CheckpointMetadata
from napari_lesionseg.engine.patches import PatchGrid
from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.vocabulary import BENCH_WORKLOADS

__all__ = ["WORKLOADS", "Workload", "block", "crop", "machine_info", "metadata", "prepare"]

#: Workload names, in the order the report lists them.
WORKLOADS: tuple[str, ...] = BENCH_WORKLOADS
#: The synthetic 1 mm head when the phantom cannot be made (the phantom at 1 mm is 201x237x183).
SHAPE_1MM: tuple[int, int, int] = (200, 230, 190)
#: Voxel -> RAS+ affine of 1 mm arrays whose axes point superior, posterior, left (the canonical order).
_SPL_AFFINE = np.array([[0.0, 0.0, -1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


@dataclasses.dataclass(frozen=True)
class Workload:
    """One subject on disk and how it is cut and augmented."""

    name: str
    folder: Path
    modalities: tuple[str, ...]
    patch_size: tuple[int, int, int] | None  # None: the preset's
    border: str
    tta: str
    note: str


def prepare(
    name: str,
    tmp: Path,
    paper_shape: Sequence[int],
    paper_patch: Sequence[int],
    sample_folder: str | Path | None,
    seed: int,
    shape_1mm: Sequence[int] | None = None,
) -> Workload | str:
    """The workload's subject folder on disk, or ``"name:reason"`` when it cannot be made.

    The 1 mm subject is the phantom at 1 mm, else (no nilearn) a synthetic head of `SHAPE_1MM`;
    a given `shape_1mm` asks for the synthetic head of that shape (smoke runs).
    """
    if name == "paper":
        folder = _write_synthetic_subject(tmp / "paper", tuple(paper_shape), MODALITIES, seed)
        note = f"synthetic {len(MODALITIES)}-channel {tuple(paper_shape)} volume, {tuple(paper_patch)} patches, paper grid (padded)"
        return Workload("paper", folder, MODALITIES, tuple(paper_patch), "pad", "paper", note)  # type: ignore[arg-type]
    if name == "sample":
        try:
            folder = Path(sample_folder) if sample_folder is not None else _sample_folder(tmp)
        except (LesionSegError, ImportError, OSError) as err:
            return f"sample:no sample subject ({err}); make one with `lesionseg sample`"
        return Workload("sample", folder, _modalities(folder), None, "flush", "paper", f"sample subject {folder.name}")
    if name == "1mm":
        folder, note = _subject_1mm(tmp / "1mm", None if shape_1mm is None else tuple(shape_1mm), seed)
        return Workload("1mm", folder, _modalities(folder), None, "flush", "none", note)
    raise LesionSegError(f"unknown workload {name!r}; expected one of {', '.join(WORKLOADS)}")


def block(grid: PatchGrid, max_patches: int | None) -> tuple[int, int, int]:
    """Patches per axis of the measured corner block: the whole grid, or at most `max_patches`, grown evenly."""
    counts = list(grid.counts)
    if max_patches is None or max_patches >= len(grid):
        return tuple(counts)  # type: ignore[return-value]
    # a padded grid has at least two patches along every axis longer than zero
    sizes = [min(2, c) if grid.border == "pad" else 1 for c in counts]
    while True:
        growable = [a for a in (2, 1, 0) if sizes[a] < counts[a] and np.prod(sizes) // sizes[a] * (sizes[a] + 1) <= max_patches]
        if not growable:
            return tuple(sizes)  # type: ignore[return-value]
        axis = min(growable, key=lambda a: sizes[a])
        sizes[axis] += 1


def crop(stack: np.ndarray, grid: PatchGrid, sizes: Sequence[int]) -> np.ndarray:
    """The part of the volume whose grid (same patch, overlap and border) is exactly the first `sizes` patches."""
    slices = []
    for axis, (count, n) in enumerate(zip(grid.counts, sizes)):
        if n == count:
            slices.append(slice(None))
            continue
        stride = int(grid.axis_origins[axis][1] - grid.axis_origins[axis][0])
        extent = (n - 1) * stride + (0 if grid.border == "pad" else grid.patch_size[axis])
        slices.append(slice(0, extent))
    return np.ascontiguousarray(stack[(slice(None), *slices)])


def metadata(preset: str, config: dict[str, Any], modalities: Sequence[str], patch: Sequence[int]) -> CheckpointMetadata:
    """What a checkpoint of this randomly initialised network would record (timing does not depend on weights)."""
    return CheckpointMetadata(
        name=f"bench-{preset}", model=config, loss="fbeta", beta=None, modalities=list(modalities),
        patch_size=[int(p) for p in patch], normalization=dict(NORMALIZATION),
    )  # fmt: skip


def machine_info() -> dict[str, Any]:
    """Where the numbers come from, including the load other work put on the machine when the report began."""
    from napari_lesionseg.engine.precision import native_bfloat16

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "native_bfloat16": native_bfloat16(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    with contextlib.suppress(ImportError):
        import monai

        info["monai"] = monai.__version__
    return info


def _modalities(folder: Path) -> tuple[str, ...]:
    from napari_lesionseg.data.naming import find_subject_files

    return tuple(find_subject_files(folder)[0])


def _sample_folder(tmp: Path) -> Path:
    from napari_lesionseg.data.samples import sample_subject

    try:
        return sample_subject(0)
    except LesionSegError:
        return _phantom(tmp / "sample", 2.0)


def _subject_1mm(folder: Path, shape: tuple[int, int, int] | None, seed: int) -> tuple[Path, str]:
    """The phantom at 1 mm, or a synthetic 4-channel head (of `shape`, else `SHAPE_1MM`)."""
    if shape is None:
        try:
            subject = _phantom(folder, 1.0)
            return subject, f"1 mm phantom {subject.name}"
        except ImportError:
            shape = SHAPE_1MM
    subject = _write_synthetic_subject(folder, shape, CORE_MODALITIES, seed)
    return subject, f"synthetic 1 mm {shape} head"


def _phantom(folder: Path, spacing: float) -> Path:
    from napari_lesionseg.data.phantom import write_phantoms

    write_phantoms(folder, 1, seed=0, spacing=spacing)
    return next(p for p in sorted(folder.iterdir()) if p.is_dir())


def _write_synthetic_subject(folder: Path, shape: tuple[int, int, int], modalities: Sequence[str], seed: int) -> Path:
    """An ellipsoidal 'head' with noise per modality, as 1 mm NIfTI files stored in canonical (S, P, L) order."""
    from napari_lesionseg.data.geometry import Geometry
    from napari_lesionseg.data.volumes import save_volume

    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    radius = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    head = radius < 0.8
    geometry = Geometry.from_affine(_SPL_AFFINE, shape)  # canonical array == stored array, of `shape`
    for k, modality in enumerate(modalities):
        image = np.where(head, 300.0 + 50.0 * k, 5.0) + rng.normal(0.0, 20.0, size=shape)
        save_volume(image.astype(np.float32), geometry, folder / f"bench_{modality}.nii.gz", dtype=np.float32)
    return folder


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
