"""Fusion of overlapping patch predictions: weight kernels and a streaming accumulator (Sec. III.C).

Every fused voxel is a weighted mean ``sum(w * p) / sum(w)`` over the predictions that cover it
(all overlapping patches and all their augmentations), with one weight kernel per mode:

* ``"tiling"``: each voxel comes from exactly one patch, the one whose centre is nearest (its
  Voronoi cell, :meth:`PatchGrid.tiling_boxes`); weight 1 inside the cell, 0 outside. With
  ``overlap=0`` this is the plain tiling of the paper; on an overlapping grid it keeps the centre
  part of each patch. Augmented predictions of that patch are averaged.
* ``"uniform"``: weight 1 everywhere, the plain average (MONAI's ``mode="constant"``).
* ``"spline"``: the paper's B-spline weighted soft voting: the centred second-order (quadratic)
  B-spline, scaled so that its support ``[-3/2, 3/2]`` spans the patch, sampled at voxel centres,
  multiplied over the three axes and normalised to 1 at the centre. Sampling at voxel centres
  keeps every weight strictly positive (about 5e-11 in the corner of a 64^3 patch, far above the
  float32 minimum), so no floor is needed and no covered voxel has a zero weight sum.
* ``"gaussian"``: the importance map of MONAI and nnU-Net (sigma = patch / 8, clamped at 1e-3),
  for comparison.

:class:`FusionAccumulator` keeps two float32 volumes per mode, the running sums of ``w * p`` and
of ``w``, plus ``w * p**2`` for one mode to give the uncertainty (the weighted standard deviation
of all predictions covering a voxel, around the fused probability of that mode). Memory is
O(volume), whatever the number of patches; patches are added as they are predicted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_lesionseg.engine.patches import PatchGrid
from napari_lesionseg.errors import InvalidInputError
from napari_lesionseg.vocabulary import FUSION_MODES

__all__ = ["FUSION_MODES", "FusionAccumulator", "bspline2", "check_modes", "weight_kernel"]

#: MONAI's default Gaussian width (sigma = patch * 0.125) and its clamp of the smallest weights.
GAUSSIAN_SIGMA_SCALE = 0.125
GAUSSIAN_FLOOR = 1e-3


def bspline2(t: np.ndarray) -> np.ndarray:
    """The centred quadratic B-spline basis function (support ``[-3/2, 3/2]``, peak 3/4 at 0)."""
    a = np.abs(np.asarray(t, dtype=np.float64))
    inner = 0.75 - a**2
    outer = 0.5 * (a - 1.5) ** 2
    return np.where(a <= 0.5, inner, np.where(a < 1.5, outer, 0.0))


def weight_kernel(mode: str, patch_size: Sequence[int]) -> np.ndarray:
    """The ``(pz, py, px)`` float32 weight of each voxel of a patch for fusion `mode` (max 1).

    ``"tiling"`` and ``"uniform"`` give ones (tiling also crops each patch to its Voronoi cell).
    """
    check_modes((mode,))
    patch = tuple(int(p) for p in patch_size)
    if mode in ("tiling", "uniform"):
        return np.ones(patch, dtype=np.float32)
    axis_weights = [_spline_1d(p) if mode == "spline" else _gaussian_1d(p) for p in patch]
    kernel = axis_weights[0][:, None, None] * axis_weights[1][None, :, None] * axis_weights[2][None, None, :]
    if mode == "gaussian":
        kernel = np.maximum(kernel, max(kernel.min(), GAUSSIAN_FLOOR))
    return kernel.astype(np.float32)


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """Return `modes` as a tuple after checking that each is a known fusion mode."""
    modes = tuple(modes)
    unknown = [m for m in modes if m not in FUSION_MODES]
    if unknown or not modes:
        raise InvalidInputError(f"fusion modes must be among {FUSION_MODES}, got {modes!r}")
    return modes


class FusionAccumulator:
    """Running weighted sums of patch predictions over a volume, for several fusion modes at once.

    Args:
        grid: the patch grid the predictions come from (patch indices refer to it).
        modes: fusion modes to accumulate, e.g. ``("spline", "uniform", "tiling")``.
        device: where the sums live (the network's device when they fit, else the CPU).
        uncertainty_mode: the mode whose weights the uncertainty uses (``None``: no uncertainty).

    Example:
        >>> from napari_lesionseg.engine.patches import make_grid
        >>> grid = make_grid((20, 20, 20), 8, overlap=0.5)
        >>> acc = FusionAccumulator(grid, ("spline", "uniform"))
        >>> acc.add(torch.full((len(grid), 8, 8, 8), 0.25), range(len(grid)))
        >>> float(acc.result("spline").max())
        0.25
    """

    def __init__(
        self,
        grid: PatchGrid,
        modes: Sequence[str] = ("spline",),
        *,
        device: str | torch.device = "cpu",
        uncertainty_mode: str | None = None,
    ) -> None:
        self.grid = grid
        self.modes = check_modes(modes)
        if uncertainty_mode is not None and uncertainty_mode not in self.modes:
            raise InvalidInputError(f"uncertainty mode {uncertainty_mode!r} is not among the fused modes {self.modes}")
        self.uncertainty_mode = uncertainty_mode
        self.device = torch.device(device)
        self._origins = grid.origins
        self._cells = grid.tiling_boxes() if "tiling" in self.modes else None
        self._kernels = {m: torch.from_numpy(weight_kernel(m, grid.patch_size)) for m in self.modes}
        self._num = {m: torch.zeros(grid.shape, dtype=torch.float32) for m in self.modes}
        self._den = {m: torch.zeros(grid.shape, dtype=torch.float32) for m in self.modes}
        self._sq = torch.zeros(grid.shape, dtype=torch.float32) if uncertainty_mode else None
        self.to(self.device)

    @staticmethod
    def required_bytes(shape: Sequence[int], n_modes: int, uncertainty: bool) -> int:
        """Bytes of the accumulation volumes for `n_modes` modes (to decide if they fit on a device)."""
        return int(np.prod(shape)) * 4 * (2 * n_modes + int(uncertainty))

    def to(self, device: str | torch.device) -> FusionAccumulator:
        """Move the sums to `device` (e.g. to the CPU after a CUDA out-of-memory error)."""
        self.device = torch.device(device)
        for buffers in (self._num, self._den, self._kernels):
            buffers.update({k: v.to(self.device) for k, v in buffers.items()})
        if self._sq is not None:
            self._sq = self._sq.to(self.device)
        return self

    def add(self, predictions: torch.Tensor | np.ndarray, indices: Sequence[int]) -> None:
        """Add the probabilities predicted for the patches `indices` of the grid.

        Args:
            predictions: ``(B, V, pz, py, px)`` (V augmented predictions per patch, already mapped
                back) or ``(B, pz, py, px)`` probabilities.
            indices: the B patch indices in the grid.
        """
        preds = torch.as_tensor(predictions).to(self.device, torch.float32)
        if preds.ndim == 4:
            preds = preds[:, None]
        if preds.shape[0] != len(indices) or tuple(preds.shape[2:]) != self.grid.patch_size:
            raise InvalidInputError(
                f"predictions of shape {tuple(preds.shape)} do not match "
                f"{len(indices)} patches of {self.grid.patch_size}"
            )
        # every temporary first, so that running out of memory leaves the sums untouched (the adds below
        # allocate nothing: weights multiply in place)
        mean = preds.mean(dim=1)
        squares = (preds * preds).mean(dim=1) if self.uncertainty_mode else None
        for mode in self.modes:
            with_squares = squares if mode == self.uncertainty_mode else None
            for b, index in enumerate(indices):
                self._add_patch(mode, int(index), mean[b], None if with_squares is None else with_squares[b])

    def add_background(self, indices: Sequence[int]) -> None:
        """Add probability 0 for the patches `indices` (skipped background): only their weights count."""
        for mode in self.modes:
            for index in indices:
                box = self._box(mode, int(index))
                if box is None:
                    continue
                dst, src = box
                self._den[mode][dst] += 1.0 if mode in ("tiling", "uniform") else self._kernels[mode][src]

    def result(self, mode: str) -> np.ndarray:
        """The fused ``(Z, Y, X)`` float32 probability of `mode`; voxels no patch has reached yet are 0."""
        return self._fused(mode, (slice(None),) * 3).cpu().numpy()

    def partial(self, mode: str, box: np.ndarray) -> np.ndarray:
        """The fused probability of `mode` inside ``box = [[z0, y0, x0], [z1, y1, x1]]`` (a copy)."""
        return self._fused(mode, _box_slices(box)).cpu().numpy()

    def weight_sum(self, mode: str) -> np.ndarray:
        """The per-voxel sum of the weights of `mode` received so far (for the app's heatmaps)."""
        return self._den[self._checked(mode)].cpu().numpy()

    def uncertainty(self) -> np.ndarray:
        """Weighted standard deviation of the predictions at each voxel, around the fused probability."""
        if self._sq is None or self.uncertainty_mode is None:
            raise InvalidInputError("this accumulator was made without an uncertainty mode")
        den = self._den[self.uncertainty_mode]
        mean = _safe_divide(self._num[self.uncertainty_mode], den)
        variance = _safe_divide(self._sq, den) - mean * mean
        return torch.sqrt(torch.clamp(variance, min=0.0)).cpu().numpy()

    def _box(self, mode: str, index: int) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
        """Where patch `index` adds in the volume and which part of the patch that is (None: nowhere)."""
        origin = self._origins[index]
        start = self._cells[index, 0] if mode == "tiling" else np.maximum(origin, 0)
        stop = self._cells[index, 1] if mode == "tiling" else np.minimum(origin + self.grid.patch_size, self.grid.shape)
        if np.any(stop <= start):
            return None
        dst = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
        src = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(start, stop, origin))
        return dst, src

    def _add_patch(self, mode: str, index: int, values: torch.Tensor, squares: torch.Tensor | None) -> None:
        box = self._box(mode, index)
        if box is None:
            return
        dst, src = box
        if mode in ("tiling", "uniform"):
            self._num[mode][dst] += values[src]
            self._den[mode][dst] += 1.0
            if squares is not None:
                self._sq[dst] += squares[src]
            return
        kernel = self._kernels[mode][src]
        self._num[mode][dst].addcmul_(kernel, values[src])
        self._den[mode][dst] += kernel
        if squares is not None:
            self._sq[dst].addcmul_(kernel, squares[src])

    def _fused(self, mode: str, where: tuple[slice, ...]) -> torch.Tensor:
        mode = self._checked(mode)
        return _safe_divide(self._num[mode][where], self._den[mode][where])

    def _checked(self, mode: str) -> str:
        if mode not in self.modes:
            raise InvalidInputError(f"fusion mode {mode!r} was not accumulated; this run fused {self.modes}")
        return mode


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (voxels no patch has covered yet)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


def _box_slices(box: np.ndarray) -> tuple[slice, slice, slice]:
    box = np.asarray(box)
    return tuple(slice(int(a), int(b)) for a, b in zip(box[0], box[1]))  # type: ignore[return-value]


def _spline_1d(patch: int) -> np.ndarray:
    centres = (np.arange(patch) + 0.5 - patch / 2) * (3.0 / patch)
    return bspline2(centres) / bspline2(np.zeros(1))[0]


def _gaussian_1d(patch: int) -> np.ndarray:
    x = np.arange(patch) - (patch - 1) / 2.0
    sigma = patch * GAUSSIAN_SIGMA_SCALE
    return np.exp(-(x**2) / (2 * sigma**2))
