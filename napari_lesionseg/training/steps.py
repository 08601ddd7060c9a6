"""One optimizer step that refuses non-finite gradients, as AMP's gradient scaler does.

bfloat16 autocast on a CPU can, rarely, give NaN weight gradients (seen with oneDNN on 2 threads,
never on 1; the forward pass and the loss stay finite). Such a step is skipped: the optimizer is
not stepped, so one bad step cannot turn every weight into NaN, and the loop counts it.
"""

from __future__ import annotations

import torch

__all__ = ["apply_gradients", "gradients_are_finite"]


def gradients_are_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite (one device sync, not one per tensor)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def apply_gradients(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> bool:
    """Step `optimizer` (through `scaler` when it is enabled) unless a gradient is NaN or infinite.

    Returns:
        True if the step was applied, False if it was skipped.
    """
    if not scaler.is_enabled():
        finite = gradients_are_finite(optimizer)
        if finite:
            optimizer.step()
        return finite
    scaler.unscale_(optimizer)
    finite = gradients_are_finite(optimizer)
    scaler.step(optimizer)  # skips the step by itself after an inf/NaN, and lowers the scale
    scaler.update()
    return finite
