"""DistributedDataParallel plumbing: one process per device under `torchrun`, or a single process.

`torchrun --nproc_per_node N` sets RANK, LOCAL_RANK and WORLD_SIZE; `init_distributed` reads them
and joins the process group (NCCL on GPUs, Gloo on CPU). Without them training runs in one
process and every helper here is a no-op, so the loop has a single code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistContext",
    "any_rank",
    "broadcast_buffers",
    "broadcast_object",
    "destroy_distributed",
    "gather_object",
    "init_distributed",
    "mean_over_ranks",
    "unwrap",
    "wrap_model",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def active(self) -> bool:
        """True when a process group with more than one process is running."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and progress."""
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group torchrun describes in the environment, or stay single-process.

    Args:
        device: "cpu", "cuda", "cuda:N" or None (CUDA when available). Under torchrun each rank
            takes GPU LOCAL_RANK; the backend is NCCL on GPUs and Gloo on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if world_size <= 1:
        chosen = torch.device(device or ("cuda" if want_cuda else "cpu"))
        return DistContext(0, 1, chosen)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistContext(rank, world_size, chosen, owns_group)


def destroy_distributed(context: DistContext) -> None:
    """Leave the process group `init_distributed` joined (after all ranks have arrived)."""
    if context.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistContext) -> nn.Module:
    """Wrap `model` in DistributedDataParallel when several processes train it."""
    if not context.active:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network inside a DDP wrapper (or `model` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def broadcast_buffers(model: nn.Module, context: DistContext) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP syncs buffers at the start of each forward pass, so after the last step every rank holds
    statistics updated by its own batch; this makes the saved and validated network identical.
    """
    if context.active:
        for buffer in unwrap(model).buffers():
            dist.broadcast(buffer.data, src=0)


def any_rank(flag: bool, context: DistContext) -> bool:
    """True if `flag` is true on any rank (so all ranks stop together on a cancel)."""
    if not context.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_object(obj: Any, context: DistContext) -> Any:
    """Rank 0's `obj` on every rank (picklable objects)."""
    if not context.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_object(obj: Any, context: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not context.active:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def mean_over_ranks(total: float, count: int, context: DistContext) -> float:
    """Mean of values summed to `total` over `count` items on each rank, across all ranks (NaN if none)."""
    if context.active:
        both = torch.tensor([float(total), float(count)], dtype=torch.float64, device=context.device)
        dist.all_reduce(both)
        total, count = float(both[0]), int(both[1])
    return total / count if count else float("nan")
