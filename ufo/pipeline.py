"""`ufo pipeline`: data -> supernet training -> single-task baselines -> search -> trim -> report.

Each stage is skipped when its output already exists (so an interrupted pipeline continues where it
stopped); --force reruns everything. Stage times go to <run>/pipeline.json and into the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ufo.search.budget import Budget
from ufo.search.evolution import EvolutionSettings
from ufo.tasks import parse_tasks
from ufo.train.config import TrainConfig, get_train_config

log = logging.getLogger(__name__)


def baseline_config(cfg: TrainConfig, task: str) -> TrainConfig:
    """Single-task baseline: the same backbone at its largest size, the same steps and images per task per step,
    so it sees exactly as many images of its task as the supernet did."""
    return replace(cfg, tasks=(task,), sandwich=("max",))


def _stage(name: str, done: bool, times: dict[str, float], fn, *args, **kwargs) -> Any:
    if done:
        log.info("pipeline: %s already done, skipping", name)
        return None
    started = time.perf_counter()
    log.info("pipeline: %s", name)
    out = fn(*args, **kwargs)
    times[name] = round(time.perf_counter() - started, 1)
    return out


def run_pipeline(preset: str, data_root: str | Path, run_dir: str | Path, docs_dir: str | Path,
                 tasks: tuple[str, ...], params_ratio: float, flops_ratio: float | None, settings: EvolutionSettings,
                 train_overrides: dict[str, Any] | None = None, finetune_steps: int = 0,
                 force: bool = False) -> dict[str, Any]:
    from ufo.data.demo import build_demo
    from ufo.model.config import largest_config
    from ufo.model.cost import subnet_cost
    from ufo.model.presets import get_arch
    from ufo.report.build import build_report
    from ufo.search.run import run_search
    from ufo.search.trim import trim
    from ufo.train.run import run_training

    started = time.perf_counter()
    data_root, run_dir = Path(data_root), Path(run_dir)
    times: dict[str, float] = {}
    cfg = get_train_config(preset).with_overrides(tasks=tasks, **(train_overrides or {}))
    _stage("data", (data_root / "manifest.json").exists() and not force, times, build_demo, data_root)
    supernet_dir = run_dir / "supernet"
    _stage("train_supernet", (supernet_dir / "metrics.json").exists() and not force, times, run_training, cfg,
           data_root, supernet_dir, resume=(supernet_dir / "checkpoint.pt").exists() and not force)
    for task in tasks:
        out = run_dir / "baselines" / task
        _stage(f"train_baseline_{task}", (out / "metrics.json").exists() and not force, times, run_training,
               baseline_config(cfg, task), data_root, out, resume=(out / "checkpoint.pt").exists() and not force)
    largest = subnet_cost(get_arch(cfg.preset), largest_config(get_arch(cfg.preset)))
    budget = Budget(max_params=int(params_ratio * largest.params),
                    max_flops=int(flops_ratio * largest.flops) if flops_ratio else None)
    checkpoint = supernet_dir / "checkpoint.pt"
    for task in tasks:
        out = run_dir / "search" / task
        _stage(f"search_{task}", (out / "search.json").exists() and not force, times, run_search, checkpoint, task,
               data_root, out, budget, settings)
        subnet = run_dir / "subnets" / f"{task}.pt"
        _stage(f"trim_{task}", subnet.exists() and not force, times, trim, checkpoint, out / "search.json",
               data_root, subnet)
        if finetune_steps > 0:  # measured beside the un-tuned subnet, which stays the one exported
            tuned = run_dir / "subnets" / f"{task}.finetuned.pt"
            _stage(f"finetune_{task}", tuned.exists() and not force, times, trim, checkpoint, out / "search.json",
                   data_root, tuned, finetune_steps)
    summary = {"preset": preset, "tasks": list(tasks), "budget": budget.to_dict(), "stage_seconds": times}
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    (run_dir / "pipeline.json").write_text(json.dumps(summary, indent=2))
    _stage("report", False, times, build_report, run_dir, data_root, docs_dir, tasks)
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    (run_dir / "pipeline.json").write_text(json.dumps(summary, indent=2))
    return summary


def cli_pipeline(args: argparse.Namespace) -> int:
    settings = EvolutionSettings(population=args.population, generations=args.generations, seed=args.seed)
    summary = run_pipeline(args.preset, args.data, args.out, args.docs, parse_tasks(args.tasks), args.max_params_ratio,
                           args.max_flops_ratio, settings, train_overrides={"steps": args.steps},
                           finetune_steps=args.finetune_steps, force=args.force)
    print(f"pipeline done in {summary['total_seconds']} s; report in {Path(args.docs) / 'results.md'}")
    return 0
