"""torchrun / DistributedDataParallel glue. Single process when WORLD_SIZE is unset (the CPU default)."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as tdist
from torch import nn


def setup() -> int:
    """Join the process group torchrun describes in the environment; return this process's rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return tdist.get_rank()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP when distributed. find_unused_parameters: a subnet leaves sliced-off heads, blocks past its
    depth and FFNs its router did not pick without gradients."""
    if not tdist.is_initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def no_sync_unless(model: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """Accumulate gradients of all sandwich passes locally and all-reduce once, on the last."""
    if last or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()
