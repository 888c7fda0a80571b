"""Search budgets: max params, max FLOPs, max measured latency; and what to say when nothing fits."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ufo.model.config import ArchSpec, SubnetConfig, smallest_config
from ufo.model.cost import subnet_cost


class BudgetError(ValueError):
    """No config of the search space fits the budget; the message names the limit and the nearest feasible value."""


@dataclass(frozen=True)
class Budget:
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    latency_batch: int = 1

    def to_dict(self) -> dict:
        return {"max_params": self.max_params, "max_flops": self.max_flops,
                "max_latency_ms": self.max_latency_ms, "latency_batch": self.latency_batch}


def measure_latency_ms(module: nn.Module, img_size: tuple[int, int], batch: int = 1, repeats: int = 10,
                       warmup: int = 2) -> float:
    """Median wall time of one forward at `batch`, in ms, on this machine's CPU."""
    module = module.eval()
    x = torch.randn(batch, 3, *img_size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            module(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[len(times) // 2]


def check_static_budget(arch: ArchSpec, budget: Budget) -> None:
    """Fail fast when even the smallest config breaks the params or FLOPs limit."""
    cost = subnet_cost(arch, smallest_config(arch))
    if budget.max_params is not None and cost.params > budget.max_params:
        raise BudgetError(f"no config fits max_params={budget.max_params:,}: the smallest subnet has "
                          f"{cost.params:,} params (nearest feasible limit: {cost.params:,})")
    if budget.max_flops is not None and cost.flops > budget.max_flops:
        raise BudgetError(f"no config fits max_flops={budget.max_flops:,}: the smallest subnet needs "
                          f"{cost.flops:,} FLOPs (nearest feasible limit: {cost.flops:,})")


def fits_static(arch: ArchSpec, cfg: SubnetConfig, budget: Budget) -> bool:
    cost = subnet_cost(arch, cfg)
    return (budget.max_params is None or cost.params <= budget.max_params) and (
        budget.max_flops is None or cost.flops <= budget.max_flops)
