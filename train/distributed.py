"""Distributed setup for training: ``torchrun`` environment → process group, else one process.

:func:`init_distributed_mode` reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` when it is called (never at import
time). Without them it prints "Not using distributed mode" and returns a one-process :class:`DistInfo`, like
torchvision's references. Backend: ``nccl`` on CUDA, ``gloo`` on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["DistInfo", "init_distributed_mode", "is_main_process", "cleanup", "wrap_ddp", "unwrap_model"]


@dataclass(frozen=True)
class DistInfo:
    """``distributed`` (a process group is up), ``rank``, ``world_size``, ``local_rank`` and the ``device``."""

    distributed: bool
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed_mode(device: str | None = None) -> DistInfo:
    """Start the process group from ``torchrun``'s environment, or fall back to one process.

    Args:
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available). In distributed CUDA mode each process uses
            ``cuda:LOCAL_RANK``.
    """
    import torch.distributed as dist

    want = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        if want.startswith("cuda"):
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
            backend = "nccl"
        else:
            dev = torch.device(want)
            backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://", world_size=world, rank=rank)
        return DistInfo(True, rank, world, local, dev)
    print("Not using distributed mode")
    return DistInfo(False, 0, 1, 0, torch.device(want))


def is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def cleanup(info: DistInfo) -> None:
    import torch.distributed as dist

    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model, info: DistInfo, device):
    """``model`` in a ``DistributedDataParallel`` wrapper when ``info.distributed`` (on ``device``'s CUDA index, or
    none on CPU); the model itself otherwise. :func:`unwrap_model` undoes it."""
    if not info.distributed:
        return model
    from torch import nn

    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap_model(model):
    """The module inside a ``DistributedDataParallel`` wrapper (the model itself when not wrapped)."""
    return model.module if hasattr(model, "module") else model
