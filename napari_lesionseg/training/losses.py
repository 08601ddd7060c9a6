"""Segmentation losses of the papers, on network logits and float targets of the same shape.

Every loss takes **logits** (the networks return logits), applies the sigmoid itself in float32
(inputs from fp16/bf16 autocast are upcast first, so sums over a batch of 64^3 patches neither
overflow nor lose the small lesion counts) and returns a scalar tensor to minimise.

Reduction: as in eq. 4 of Hashemi et al. 2018, which sums over all voxels i = 1..N, the
similarity losses (F-beta, Tversky, Dice, generalized Dice) treat the **whole batch as one set of
voxels**: one ratio of sums over every voxel of every patch, not a mean of per-patch ratios.
Focal and boundary losses are means over all voxels of the batch.

* `fbeta_loss`: 1 - F_beta of eq. 4 (001); beta > 1 weighs false negatives more (recall).
* `tversky_loss`: 1 - Tversky index of eq. 3 (000), alpha on false positives, beta on false
  negatives; F_beta is Tversky with alpha = 1/(1+beta^2), beta_T = beta^2/(1+beta^2) (eq. 6, 001).
* `dice_loss`: F_beta with beta = 1.
* `generalized_dice_loss`: Sudre et al. 2017 over the two classes (lesion, background) with
  weights 1/volume^2 (the setting of 001, Sec. IV.C); an empty class gets the other's weight.
* `focal_loss`: Lin et al. 2017, alpha on the lesion class (0.25) and gamma = 2 by default.
* `boundary_loss`: Kervadec et al. 2019, eq. 5: mean of phi_G * p with phi_G the signed distance
  map of the reference (`signed_distance_map`, negative inside, positive outside, in mm).
* `false_positive_penalty`: mean over all voxels of -log(1 - p) where the reference is empty, added
  by `with_false_positive_penalty` for fine-tuning on lesion-free patches, where F-beta saturates.

`make_loss(name, **params)` returns a `LossFunction` for the training loop::

    loss_fn = make_loss("boundary")                # GDL + boundary, eq. 6 of Kervadec et al.
    for epoch in range(epochs):
        loss_fn.set_epoch(epoch)                   # alpha = max(1 - 0.01 * epoch, 0.01)
        for images, target, spacing in batches:
            dist = signed_distance_maps(target, spacing) if loss_fn.requires_distance_map else None
            loss = loss_fn(model(images), target, distance_map=dist)

The distance maps are computed per patch (after cropping and augmentation; the 180-degree
rotations keep distances) on the CPU with scipy, so a data loader can compute them in its workers
and hand them over with the batch as a float tensor shaped like the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from napari_lesionseg import constants
from napari_lesionseg.errors import LesionSegError

__all__ = [
    "LOSS_NAMES",
    "FalsePositivePenalised",
    "LossFunction",
    "boundary_alpha",
    "boundary_loss",
    "dice_loss",
    "false_positive_penalty",
    "fbeta_loss",
    "focal_loss",
    "generalized_dice_loss",
    "make_loss",
    "signed_distance_map",
    "signed_distance_maps",
    "tversky_loss",
    "with_false_positive_penalty",
]

#: Names `make_loss` accepts; "boundary" is generalized Dice + boundary with the alpha schedule.
LOSS_NAMES: tuple[str, ...] = ("fbeta", "tversky", "dice", "gdl", "focal", "boundary")

#: Added to numerator and denominator of the overlap ratios: an empty patch predicted empty
#: scores 1 instead of 0/0, and the value is far below one voxel's contribution.
SMOOTH = 1e-5


def fbeta_loss(logits: torch.Tensor, target: torch.Tensor, beta: float = 1.0, smooth: float = SMOOTH) -> torch.Tensor:
    """Return 1 - F_beta (eq. 4 of 001) over all voxels of the batch.

    Args:
        logits: network output, any shape.
        target: reference in [0, 1], same shape.
        beta: recall weight; 1 gives the Dice loss, larger values penalise false negatives more.
        smooth: added to numerator and denominator.
    """
    p, g = _probabilities(logits, target)
    b2 = float(beta) ** 2
    tp = (p * g).sum()
    fn = ((1 - p) * g).sum()
    fp = (p * (1 - g)).sum()
    return 1 - ((1 + b2) * tp + smooth) / ((1 + b2) * tp + b2 * fn + fp + smooth)


def tversky_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, beta: float = 0.5, smooth: float = SMOOTH
) -> torch.Tensor:
    """Return 1 - Tversky index (eq. 3 of 000) with `alpha` on false positives, `beta` on false negatives."""
    p, g = _probabilities(logits, target)
    tp = (p * g).sum()
    fp = (p * (1 - g)).sum()
    fn = ((1 - p) * g).sum()
    return 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = SMOOTH) -> torch.Tensor:
    """Return the soft Dice loss 1 - 2|PG| / (|P| + |G|), i.e. `fbeta_loss` with beta = 1."""
    return fbeta_loss(logits, target, beta=1.0, smooth=smooth)


def generalized_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the generalized Dice loss of Sudre et al. over (lesion, background), weights 1/volume^2.

    A class absent from the batch (no lesion, or no background) would get an infinite weight; it
    gets the other class's weight instead, so the loss stays finite and between 0 and 1.
    """
    p, g = _probabilities(logits, target)
    probs = torch.stack([p.reshape(-1), 1 - p.reshape(-1)])
    refs = torch.stack([g.reshape(-1), 1 - g.reshape(-1)])
    volumes = refs.sum(dim=1)
    weights = _inverse_square_weights(volumes)
    intersection = (weights * (probs * refs).sum(dim=1)).sum()
    union = (weights * (probs + refs).sum(dim=1)).sum()
    return 1 - 2 * intersection / union


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = constants.FOCAL_ALPHA,
    gamma: float = constants.FOCAL_GAMMA,
) -> torch.Tensor:
    """Return the focal loss of Lin et al., -alpha_t (1 - p_t)^gamma log(p_t), averaged over all voxels.

    Args:
        logits: network output.
        target: reference in [0, 1], same shape.
        alpha: weight of the lesion class (1 - alpha for background).
        gamma: focusing parameter; 0 gives alpha-weighted cross-entropy.
    """
    x, g = _check_pair(logits, target)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, g, reduction="none")
    p_t = p * g + (1 - p) * (1 - g)
    alpha_t = alpha * g + (1 - alpha) * (1 - g)
    return (alpha_t * (1 - p_t) ** gamma * ce).mean()


def boundary_loss(logits: torch.Tensor, distance_map: torch.Tensor) -> torch.Tensor:
    """Return the boundary loss of Kervadec et al. (eq. 5): mean over voxels of phi_G * p.

    Args:
        logits: network output.
        distance_map: signed distance map of the reference (`signed_distance_maps`), same shape.
    """
    p, phi = _probabilities(logits, distance_map)
    return (phi * p).mean()


def false_positive_penalty(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the mean over all voxels of -log(1 - p) on voxels whose reference is empty (cross-entropy there).

    On a lesion-free batch, 1 - F_beta is 1 - smooth / (FP + smooth): about 1 whatever the network
    does, with a vanishing gradient, so similarity losses cannot unlearn a false positive there.
    This term's gradient on a voxel's logit is p / N: it pushes every false positive down, the most
    confident ones hardest, whatever else the patch holds.
    """
    x, g = _check_pair(logits, target)
    return (F.softplus(x) * (1 - g)).mean()


def boundary_alpha(
    epoch: int,
    start: float = constants.BOUNDARY_ALPHA_START,
    end: float = constants.BOUNDARY_ALPHA_END,
    step: float = constants.BOUNDARY_ALPHA_STEP,
) -> float:
    """Return the generalized-Dice weight alpha of eq. 6 (003) at `epoch` (0-based): 1, 0.99, ... 0.01."""
    return max(start - step * max(int(epoch), 0), end)


def signed_distance_map(mask: np.ndarray, spacing: Sequence[float] | float = 1.0) -> np.ndarray:
    """Return the signed distance map phi_G of a reference mask in mm (float32, the mask's shape).

    Outside the mask: the distance to the nearest mask voxel (positive). Inside: minus the distance
    to the nearest background voxel. A mask without foreground, or without background, has no
    boundary and gets a zero map (as Kervadec et al. do for patches with background only).

    Args:
        mask: boolean or 0/1 array of any dimension.
        spacing: voxel size in mm per axis (or one value for all axes).
    """
    inside = np.asarray(mask) > 0.5
    sampling = _sampling(spacing, inside.ndim)
    if not inside.any() or inside.all():
        return np.zeros(inside.shape, dtype=np.float32)
    outside_distance = ndimage.distance_transform_edt(~inside, sampling=sampling)
    inside_distance = ndimage.distance_transform_edt(inside, sampling=sampling)
    return (outside_distance - inside_distance).astype(np.float32)


def signed_distance_maps(target: torch.Tensor, spacing: Sequence[float] | float = 1.0) -> torch.Tensor:
    """Return `signed_distance_map` of every patch of a ``(B, 1, D, H, W)`` target, as a tensor like it.

    Args:
        target: batch of reference patches (any leading dimensions; the last three are spatial).
        spacing: voxel size in mm of the three spatial axes.
    """
    masks = target.detach().to("cpu", torch.float32).numpy()
    flat = masks.reshape(-1, *masks.shape[-3:])
    maps = np.stack([signed_distance_map(mask, spacing) for mask in flat]).reshape(masks.shape)
    return torch.from_numpy(maps).to(target.device)


class LossFunction:
    """A configured loss: ``loss_fn(logits, target, distance_map=None)`` returns a scalar tensor.

    Attributes:
        name: one of `LOSS_NAMES`.
        params: the keyword arguments it was made with (JSON-serialisable, for checkpoints).
        requires_distance_map: whether calls need ``distance_map`` (`signed_distance_maps`).
    """

    requires_distance_map = False

    def __init__(self, name: str, function: Callable[..., torch.Tensor], **params: Any) -> None:
        self.name = name
        self.params = params
        self._function = function

    def set_epoch(self, epoch: int) -> None:
        """Advance a schedule to `epoch` (0-based); losses without a schedule ignore it."""

    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, distance_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._function(logits, target, **self.params)

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}({self.name!r}{', ' if params else ''}{params})"


class GDLBoundaryLoss(LossFunction):
    """alpha * generalized Dice + (1 - alpha) * boundary (eq. 6 of 003), alpha scheduled per epoch."""

    requires_distance_map = True

    def __init__(self, **params: Any) -> None:
        super().__init__("boundary", generalized_dice_loss, **params)
        self.alpha = boundary_alpha(0, **params)

    def set_epoch(self, epoch: int) -> None:
        """Set alpha to `boundary_alpha(epoch)`: 1 at epoch 0, then 0.01 less per epoch, down to 0.01."""
        self.alpha = boundary_alpha(epoch, **self.params)

    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, distance_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        if distance_map is None:
            raise LesionSegError(
                "the 'boundary' loss needs the signed distance map of every target patch: pass "
                "distance_map=losses.signed_distance_maps(target, spacing)"
            )
        regional = generalized_dice_loss(logits, target)
        return self.alpha * regional + (1 - self.alpha) * boundary_loss(logits, distance_map)


class FalsePositivePenalised(LossFunction):
    """A loss plus `weight` x `false_positive_penalty`: not degenerate on patches without lesion."""

    def __init__(self, base: LossFunction, weight: float) -> None:
        super().__init__(base.name, base._function, **base.params)
        self.base, self.weight = base, float(weight)
        self.requires_distance_map = base.requires_distance_map

    def set_epoch(self, epoch: int) -> None:
        """Advance the base loss's schedule."""
        self.base.set_epoch(epoch)

    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, distance_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.base(logits, target, distance_map=distance_map) + self.weight * false_positive_penalty(
            logits, target
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r}, weight={self.weight!r})"


def with_false_positive_penalty(loss_fn: LossFunction, weight: float) -> LossFunction:
    """`loss_fn` plus `weight` x `false_positive_penalty` (`loss_fn` itself when the weight is 0)."""
    if not (np.isfinite(weight) and weight >= 0):
        raise LesionSegError(f"the false-positive weight must be a number >= 0, got {weight}")
    return loss_fn if weight == 0 else FalsePositivePenalised(loss_fn, weight)


_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "fbeta": fbeta_loss,
    "tversky": tversky_loss,
    "dice": dice_loss,
    "gdl": generalized_dice_loss,
    "focal": focal_loss,
}
_PARAMS: dict[str, tuple[str, ...]] = {
    "fbeta": ("beta", "smooth"),
    "tversky": ("alpha", "beta", "smooth"),
    "dice": ("smooth",),
    "gdl": (),
    "focal": ("alpha", "gamma"),
    "boundary": ("start", "end", "step"),
}


def make_loss(name: str, **params: Any) -> LossFunction:
    """Return the loss `name` (one of `LOSS_NAMES`) configured with `params`.

    Args:
        name: ``"fbeta"`` (beta), ``"tversky"`` (alpha, beta), ``"dice"``, ``"gdl"``,
            ``"focal"`` (alpha, gamma) or ``"boundary"`` (GDL + boundary; start, end, step of the
            alpha schedule).
        **params: the loss's keyword arguments; omitted ones take the defaults above.
    """
    if name not in _PARAMS:
        raise LesionSegError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    unknown = sorted(set(params) - set(_PARAMS[name]))
    if unknown:
        raise LesionSegError(f"loss {name!r} got unknown parameters {unknown}; it accepts {list(_PARAMS[name])}")
    _check_params(name, params)
    if name == "boundary":
        return GDLBoundaryLoss(**params)
    return LossFunction(name, _FUNCTIONS[name], **params)


def _check_params(name: str, params: dict[str, Any]) -> None:
    beta, alpha, gamma = params.get("beta", 1.0), params.get("alpha", 0.5), params.get("gamma", 0.0)
    if name == "fbeta" and not beta > 0:
        raise LesionSegError(f"F-beta loss needs beta > 0, got {beta}")
    if name == "tversky" and not (alpha >= 0 and beta >= 0 and alpha + beta > 0):
        raise LesionSegError(f"Tversky loss needs alpha, beta >= 0 with alpha + beta > 0, got {alpha}, {beta}")
    if name == "focal" and not (0 <= alpha <= 1 and gamma >= 0):
        raise LesionSegError(f"focal loss needs 0 <= alpha <= 1 and gamma >= 0, got {alpha}, {gamma}")


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise ValueError(f"logits have shape {tuple(logits.shape)} but the target has {tuple(target.shape)}")
    dtype = torch.promote_types(logits.dtype, torch.float32)  # float64 stays float64 (gradcheck)
    return logits.to(dtype), target.to(dtype)


def _probabilities(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, g = _check_pair(logits, target)
    return torch.sigmoid(x), g


def _inverse_square_weights(volumes: torch.Tensor) -> torch.Tensor:
    weights = 1.0 / volumes**2
    finite = torch.isfinite(weights)
    largest = torch.where(finite, weights, torch.zeros_like(weights)).max()
    return torch.where(finite, weights, largest)


def _sampling(spacing: Sequence[float] | float, ndim: int) -> tuple[float, ...]:
    sampling = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(sampling) != ndim or min(sampling) <= 0:
        raise LesionSegError(f"voxel spacing {sampling} does not fit a {ndim}-D mask; expected {ndim} positive values")
    return sampling
