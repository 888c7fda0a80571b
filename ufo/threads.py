"""Process-wide torch settings for the CLI commands."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def configure_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads: UFO_THREADS or `requested` if given; otherwise every core, except when the
    machine is already busy (1-min load >= half the cores), then 1 thread. Measured here: a 2-thread training
    step took 5x longer than a 1-thread one while other processes held the cores (threads spin-wait for
    each other), and about 1.5x shorter on a quiet machine."""
    cores = os.cpu_count() or 1
    env = os.environ.get("UFO_THREADS")
    if env:
        threads = int(env)
    elif requested:
        threads = requested
    else:
        threads = 1 if os.getloadavg()[0] >= cores / 2 else cores
    torch.set_num_threads(max(1, threads))
    log.info("torch threads: %d (cores %d, load %.1f)", torch.get_num_threads(), cores, os.getloadavg()[0])
    return torch.get_num_threads()
