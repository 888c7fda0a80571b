"""`ufo pipeline`: data -> supernet training -> single-task baselines -> search -> trim -> report.

Each stage is skipped when its output already exists (so an interrupted pipeline continues where it
stopped); --force reruns everything. Stage times go to <run>/pipeline.json and into the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ufo.search.budget import Budget
from ufo.search.evolution import EvolutionSettings
from ufo.tasks import parse_tasks
from ufo.train.config import TrainConfig, get_train_config

log = logging.getLogger(__name__)


def baseline_config(cfg: TrainConfig, task: str) -> TrainConfig:
    """Single-task baseline: the same backbone at its largest size, the same steps and images per task per step,
    so it sees exactly as many images of its task as the supernet did."""
    return replace(cfg, tasks=(task,), sandwich=("max",))


@dataclass(frozen=True)
class Stage:
    """One pipeline step: `fn(*args, **kwargs)`, skipped when `done` (its output exists from an earlier run)."""

    name: str
    done: bool
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def run_lane(stages: list[Stage], threads: int | None = None) -> dict[str, float]:
    """Run stages in order (in this process or a worker); seconds per stage that ran."""
    if threads:
        torch.set_num_threads(threads)
    times: dict[str, float] = {}
    for stage in stages:
        if stage.done:
            log.info("pipeline: %s already done, skipping", stage.name)
            continue
        started = time.perf_counter()
        log.info("pipeline: %s", stage.name)
        stage.fn(*stage.args, **stage.kwargs)
        times[stage.name] = round(time.perf_counter() - started, 1)
    return times


def _worker_init() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A pipeline killed by SIGTERM/SIGKILL cannot stop its pool: without this, its workers (hours of
    training) would keep running as orphans."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def run_lanes(lanes: list[list[Stage]], jobs: int) -> dict[str, float]:
    """Lanes run side by side in `jobs` worker processes of one torch thread each (stages within a lane in
    order). On 2 cores a 2-thread training step was ~1.5x faster than a 1-thread one, two 1-thread processes
    ~2x; and one thread per process keeps every result independent of the machine's load. A lone lane left
    (a resumed run) runs in this process, still at one thread, so it trains exactly as a worker would.
    jobs=1: in this process, one lane after another, at this process's thread count."""
    lanes = [lane for lane in lanes if any(not s.done for s in lane)]
    if jobs <= 1 or len(lanes) <= 1:
        threads = 1 if jobs > 1 else None
        return {k: v for lane in lanes for k, v in run_lane(lane, threads).items()}
    times: dict[str, float] = {}
    context = multiprocessing.get_context("spawn")  # fork after torch has started its thread pool can hang
    with ProcessPoolExecutor(max_workers=min(jobs, len(lanes)), mp_context=context, initializer=_worker_init) as pool:
        for result in [pool.submit(run_lane, lane, 1) for lane in lanes]:
            times.update(result.result())
    return times


def balance(items: list[Stage | list[Stage]], jobs: int, cost: Callable[[Any], float]) -> list[list[Stage]]:
    """Greedy longest-first split of stage groups into `jobs` lanes of similar total cost."""
    lanes: list[list[Stage]] = [[] for _ in range(max(1, jobs))]
    loads = [0.0] * len(lanes)
    for item in sorted(items, key=cost, reverse=True):
        i = loads.index(min(loads))
        lanes[i] += item if isinstance(item, list) else [item]
        loads[i] += cost(item)
    return lanes


def run_pipeline(preset: str, data_root: str | Path, run_dir: str | Path, docs_dir: str | Path,
                 tasks: tuple[str, ...], params_ratio: float, flops_ratio: float | None, settings: EvolutionSettings,
                 train_overrides: dict[str, Any] | None = None, finetune_steps: int = 0,
                 force: bool = False, jobs: int = 1, compare_runs: tuple[str | Path, ...] = ()) -> dict[str, Any]:
    from ufo.demo.build import build_demo
    from ufo.model.config import largest_config
    from ufo.model.cost import subnet_cost
    from ufo.model.presets import get_arch
    from ufo.report.build import build_report
    from ufo.search.run import run_search
    from ufo.search.trim import trim
    from ufo.train.run import run_training

    started = time.perf_counter()
    data_root, run_dir = Path(data_root), Path(run_dir)
    cfg = get_train_config(preset).with_overrides(tasks=tasks, **(train_overrides or {}))
    times = run_lane([Stage("data", (data_root / "manifest.json").exists() and not force, build_demo, (data_root,))])

    def training(name: str, train_cfg: TrainConfig, out: Path) -> Stage:
        return Stage(name, (out / "metrics.json").exists() and not force, run_training, (train_cfg, data_root, out),
                     {"resume": (out / "checkpoint.pt").exists() and not force})

    supernet_dir = run_dir / "supernet"
    # the supernet costs about as much as the four baselines together: one lane each on 2 cores
    trainings = [training("train_supernet", cfg, supernet_dir)] + [
        training(f"train_baseline_{task}", baseline_config(cfg, task), run_dir / "baselines" / task) for task in tasks]
    times.update(run_lanes(balance(trainings, jobs, lambda s: len(s.args[0].tasks) * len(s.args[0].sandwich)), jobs))

    largest = subnet_cost(get_arch(cfg.preset), largest_config(get_arch(cfg.preset)))
    budget = Budget(max_params=int(params_ratio * largest.params),
                    max_flops=int(flops_ratio * largest.flops) if flops_ratio else None)
    checkpoint = supernet_dir / "checkpoint.pt"
    chains = []
    for task in tasks:  # search -> trim (-> fine-tune) per task, tasks side by side
        out, subnet = run_dir / "search" / task, run_dir / "subnets" / f"{task}.pt"
        chain = [Stage(f"search_{task}", (out / "search.json").exists() and not force, run_search,
                       (checkpoint, task, data_root, out, budget, settings)),
                 Stage(f"trim_{task}", subnet.exists() and not force, trim,
                       (checkpoint, out / "search.json", data_root, subnet))]
        if finetune_steps > 0:  # measured beside the un-tuned subnet, which stays the one exported
            tuned = run_dir / "subnets" / f"{task}.finetuned.pt"
            chain.append(Stage(f"finetune_{task}", tuned.exists() and not force, trim,
                               (checkpoint, out / "search.json", data_root, tuned, finetune_steps)))
        chains.append(chain)
    times.update(run_lanes(balance(chains, jobs, lambda c: 1.0), jobs))
    summary = {"preset": preset, "tasks": list(tasks), "budget": budget.to_dict(), "stage_seconds": times,
               "jobs": jobs, "threads_per_job": 1 if jobs > 1 else torch.get_num_threads()}
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    (run_dir / "pipeline.json").write_text(json.dumps(summary, indent=2))
    times.update(run_lane([Stage("report", False, build_report, (run_dir, data_root, docs_dir, tasks),
                                 {"compare_runs": compare_runs})]))
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    (run_dir / "pipeline.json").write_text(json.dumps(summary, indent=2))
    return summary


def cli_pipeline(args: argparse.Namespace) -> int:
    settings = EvolutionSettings(population=args.population, generations=args.generations, seed=args.seed)
    summary = run_pipeline(args.preset, args.data, args.out, args.docs, parse_tasks(args.tasks), args.max_params_ratio,
                           args.max_flops_ratio, settings, train_overrides={"steps": args.steps, "seed": args.seed,
                                                                  **TrainConfig.parse_overrides(args.set)},
                           finetune_steps=args.finetune_steps, force=args.force,
                           jobs=args.jobs or os.cpu_count() or 1, compare_runs=tuple(args.compare or ()))
    print(f"pipeline done in {summary['total_seconds']} s; report in {Path(args.docs) / 'results.md'}")
    return 0
