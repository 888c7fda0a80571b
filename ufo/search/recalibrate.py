"""BatchNorm recalibration: a subnet of a supernet sees other feature statistics than the ones the shared
running averages tracked, so re-estimate them on a few training batches at that subnet's config."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ufo.data.types import Sample
from ufo.model.config import SubnetConfig
from ufo.model.supernet import UFOSupernet


def recalibration_batches(samples: list[Sample], img_size: tuple[int, int], batches: int = 4,
                          batch_size: int = 64, seed: int = 0) -> list[torch.Tensor]:
    """Fixed, un-augmented training batches (seeded), so search and trim recalibrate identically."""
    from ufo.data.sampling import TaskStream

    stream = TaskStream(samples, size=img_size, batch_size=min(batch_size, len(samples)), seed=seed)
    return [next(stream)[0] for _ in range(batches)]


def _bn_layers(model: UFOSupernet, task: str) -> list[nn.modules.batchnorm._BatchNorm]:
    return [*model.stem_batchnorms(task), model.necks[task]]


@contextlib.contextmanager
def preserved_bn_state(model: UFOSupernet, task: str) -> Iterator[None]:
    """Restore the BN buffers and momentum on exit, so one candidate's recalibration never leaks into the next."""
    layers = _bn_layers(model, task)
    saved = [({k: v.clone() for k, v in m.state_dict().items()}, m.momentum) for m in layers]
    try:
        yield
    finally:
        for m, (state, momentum) in zip(layers, saved, strict=True):
            m.load_state_dict(state)
            m.momentum = momentum


@torch.no_grad()
def recalibrate_bn(model: UFOSupernet, cfg: SubnetConfig, task: str, batches: list[torch.Tensor]) -> None:
    """Reset the stem and task-neck BN statistics and re-estimate them (cumulative average) at `cfg`."""
    model.eval()
    layers = _bn_layers(model, task)
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the recalibration batches
        m.train()
    device = next(model.parameters()).device
    for x in batches:
        model(x.to(device), [(task, len(x))], cfg)
    model.eval()
