"""PyTorch's own distributed engine for the train stage: torchrun starts the processes, DDP syncs gradients."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Process:
    """This process's place in the run: rank 0 of 1 when not started by torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def start(device_type: str) -> Process:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); a no-op for one process.

    Under an external `torchrun` (several nodes, say) the world is whatever it started.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Process()
    process = Process(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))
    if device_type == "cuda":
        torch.cuda.set_device(process.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return process


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the model when there is more than one process."""
    if not dist.is_initialized():
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sum_across_processes(*values: torch.Tensor) -> list[torch.Tensor]:
    """Sum per-process tallies (loss, correct, seen) so every rank reports the whole epoch."""
    if not dist.is_initialized():
        return list(values)
    stacked = torch.stack([v.double() for v in values])
    dist.all_reduce(stacked)
    return list(stacked.unbind())
