"""Module factories for bench/ort_vs_torch.py --factory: the demo run's real subnets.

    .venv/bin/python bench/ort_vs_torch.py --factory factories:trimmed_person --input-size 64 48
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

RUN = Path(os.environ.get("UFO_BENCH_RUN", "runs/demo"))


def _subnet(task: str) -> nn.Module:
    from ufo.search.trim import load_subnet

    return load_subnet(RUN / "subnets" / f"{task}.pt")[0]


def _supernet_largest(task: str) -> nn.Module:
    from ufo.report.build import largest_static

    return largest_static(RUN / "supernet" / "checkpoint.pt", task)[0]


def trimmed_person() -> nn.Module:
    return _subnet("person")


def trimmed_face() -> nn.Module:
    return _subnet("face")


def supernet_person() -> nn.Module:
    return _supernet_largest("person")
