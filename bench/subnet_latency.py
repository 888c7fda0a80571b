"""Trimmed subnet vs supernet (largest config) CPU latency, as a ratio measured in one run.

    .venv/bin/python bench/subnet_latency.py --run runs/demo [--rounds 7] [--threads 2]

Target (docs/benchmarks.md, summary): trimmed / supernet-max latency <= 0.5 at <= 1 pt metric loss (the metric is in
docs/results.md). Rounds interleave the models so a change in machine load hits all of them alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ufo.report.build import LATENCY_BATCHES, largest_static, measure_latencies
from ufo.search.trim import load_subnet
from ufo.tasks import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    print(f"torch threads {torch.get_num_threads()}, {args.rounds} interleaved rounds, median ms per forward\n")
    print("| task | batch | supernet (largest) ms | trimmed ms | trimmed / supernet |")
    print("|---|---:|---:|---:|---:|")
    for task in TASKS:
        subnet_path = run / "subnets" / f"{task}.pt"
        if not subnet_path.exists():
            continue
        models = {"supernet": largest_static(run / "supernet" / "checkpoint.pt", task)[0],
                  "trimmed": load_subnet(subnet_path)[0]}
        lat = measure_latencies(models, models["supernet"].arch.img_size, args.rounds)
        for b in LATENCY_BATCHES:
            s, t = lat["supernet"][b], lat["trimmed"][b]
            print(f"| {task} | {b} | {s:.2f} | {t:.2f} | {t / s:.2f} |")


if __name__ == "__main__":
    main()
