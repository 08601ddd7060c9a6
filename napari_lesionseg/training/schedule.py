"""The paper's learning-rate schedule (Sec. III.E.2) as a step function and a `LambdaLR`.

The rate starts at 5e-4 and is multiplied by 0.95 every 500 steps; that interval doubles every
16,000 steps ("the first growth happens at the 16,000th step, where the interval of 500 would be
multiplied by two"). So the 32nd decay happens at step 16,000, the 33rd at 17,000, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from napari_lesionseg.constants import LR_DECAY, LR_DECAY_EVERY, LR_INTERVAL_GROWTH, LR_INTERVAL_GROWTH_EVERY

__all__ = ["PaperSchedule", "decay_count", "make_scheduler"]


def decay_count(
    step: int,
    every: int = LR_DECAY_EVERY,
    growth: float = LR_INTERVAL_GROWTH,
    growth_every: int = LR_INTERVAL_GROWTH_EVERY,
) -> int:
    """Number of decays applied by `step`: the next decay comes `interval(t)` steps after the last.

    Args:
        step: optimizer steps taken so far (0 before the first update).
        every: the initial decay interval in steps.
        growth: factor applied to the interval every `growth_every` steps.
        growth_every: steps between interval growths.
    """
    if step < 0 or every <= 0 or growth_every <= 0 or growth < 1:
        raise ValueError(
            f"schedule needs step >= 0, every > 0, growth_every > 0 and growth >= 1; "
            f"got step={step}, every={every}, growth_every={growth_every}, growth={growth}"
        )
    count, last = 0, 0
    while True:
        interval = every * growth ** (last // growth_every)
        nxt = last + max(1, round(interval))
        if nxt > step:
            return count
        count, last = count + 1, nxt


@dataclass(frozen=True)
class PaperSchedule:
    """Multiplicative learning-rate factor of step `t` (a picklable `LambdaLR` lambda)."""

    decay: float = LR_DECAY
    every: int = LR_DECAY_EVERY
    growth: float = LR_INTERVAL_GROWTH
    growth_every: int = LR_INTERVAL_GROWTH_EVERY

    def __call__(self, step: int) -> float:
        return self.decay ** decay_count(step, self.every, self.growth, self.growth_every)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: PaperSchedule | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Wrap `optimizer` in a `LambdaLR` following `schedule` (the paper's by default); step it per update."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule or PaperSchedule())
