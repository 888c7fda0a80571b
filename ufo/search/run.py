"""`ufo search`: evolutionary search of one task's subnet in a trained supernet, scored on validation
identities held out from training (the same split the training run used), under a budget.

Writes <out>/search.json (budget, settings, chosen config, full history, Pareto fronts, BN-recalibration
effect) and <out>/pareto.png.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ufo.model.config import SubnetConfig
from ufo.model.cost import subnet_cost
from ufo.model.static import extract_subnet
from ufo.model.supernet import UFOSupernet
from ufo.search.budget import Budget, measure_latency_ms
from ufo.search.evolution import Candidate, EvolutionSearch, EvolutionSettings, pareto_front
from ufo.search.recalibrate import preserved_bn_state, recalibrate_bn, recalibration_batches
from ufo.tasks import get_task
from ufo.train.checkpoint import checkpoint_hash, load_checkpoint, supernet_from_checkpoint
from ufo.train.evaluate import EvalImages

log = logging.getLogger(__name__)


def load_search_inputs(checkpoint: str | Path, task: str, data_root: str | Path):
    """The supernet and the task's data split exactly as its training run split it."""
    from ufo.datasets import load_task_data

    ckpt = load_checkpoint(checkpoint)
    model = supernet_from_checkpoint(checkpoint, ckpt)
    if task not in model.tasks:
        raise ValueError(f"task {task!r} was not trained in {checkpoint} (it has {', '.join(model.tasks)})")
    train_cfg = ckpt.get("train_config", {})
    data = load_task_data(task, data_root, val_fraction=train_cfg.get("val_fraction", 0.2),
                          seed=train_cfg.get("seed", 0))
    return model, data


def score_config(model: UFOSupernet, task: str, cfg: SubnetConfig, images: EvalImages,
                 batches: list[torch.Tensor] | None) -> dict[str, float]:
    """Validation metrics of `cfg`, after BN recalibration when `batches` are given; model state untouched."""
    with preserved_bn_state(model, task):
        if batches:
            recalibrate_bn(model, cfg, task, batches)
        return images.score(task, lambda x: model.embed(x, task, cfg))


def _plot(path: Path, task: str, history: list[Candidate], fronts: dict[str, list[Candidate]], metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, cost, label in ((axes[0], "params", "params (M)"), (axes[1], "latency_ms", "CPU latency, batch 1 (ms)")):
        scale = 1e-6 if cost == "params" else 1.0
        ax.scatter([getattr(c, cost) * scale for c in history], [c.metric for c in history], s=12, alpha=0.5,
                   label="evaluated")
        front = fronts[cost]
        ax.plot([getattr(c, cost) * scale for c in front], [c.metric for c in front], "r.-", label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel(f"validation {metric}")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"UFO subnet search: {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_search(checkpoint: str | Path, task: str, data_root: str | Path, out_dir: str | Path, budget: Budget,
               settings: EvolutionSettings, recalibrate: bool = True, progress: bool = True) -> dict[str, Any]:
    model, data = load_search_inputs(checkpoint, task, data_root)
    arch, metric = model.arch, get_task(task).metric
    images = EvalImages(data.val, arch.img_size)
    batches = recalibration_batches(data.train, arch.img_size, seed=settings.seed) if recalibrate else None

    def score(cfg: SubnetConfig) -> float:
        return score_config(model, task, cfg, images, batches)[metric]

    def latency(cfg: SubnetConfig) -> float:
        return measure_latency_ms(extract_subnet(model, cfg, task), arch.img_size, budget.latency_batch)

    largest = model.largest_config()
    seeds = (largest.with_paths({task: model.resolved_path(task, largest)}),)
    result = EvolutionSearch(arch, task, score, budget, settings, latency, seeds, progress).run()
    best = result.best.config
    without = score_config(model, task, best, images, None)[metric]
    with_recal = score_config(model, task, best, images, batches or recalibration_batches(
        data.train, arch.img_size, seed=settings.seed))[metric]
    fronts = {cost: pareto_front(result.history, cost) for cost in ("params", "latency_ms")}
    largest_cost = subnet_cost(arch, largest)
    report = {
        "task": task, "metric": metric, "checkpoint": str(checkpoint), "checkpoint_hash": checkpoint_hash(checkpoint),
        "budget": budget.to_dict(), "settings": settings.__dict__, "bn_recalibration": {
            "used": recalibrate, "best_metric_with": with_recal, "best_metric_without": without,
            "helped": with_recal > without, "batches": len(batches or []), "seed": settings.seed},
        "best": result.best.to_dict(),
        "largest": {"config": largest.to_dict(), "params": largest_cost.params, "flops": largest_cost.flops},
        "history": [c.to_dict() for c in result.history],
        "pareto": {cost: [c.to_dict() for c in front] for cost, front in fronts.items()},
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search.json").write_text(json.dumps(report, indent=2))
    _plot(out_dir / "pareto.png", task, result.history, fronts, metric)
    log.info("%s: best %s=%.4f with %s params (largest: %s)", task, metric, result.best.metric,
             f"{result.best.params:,}", f"{largest_cost.params:,}")
    return report


def budget_from_args(args: argparse.Namespace, checkpoint: str | Path) -> Budget:
    max_params = args.max_params
    if args.max_params_ratio is not None:
        ckpt = load_checkpoint(checkpoint)
        model = supernet_from_checkpoint(checkpoint, ckpt)
        max_params = int(args.max_params_ratio * subnet_cost(model.arch, model.largest_config()).params)
    return Budget(max_params=max_params, max_flops=args.max_flops, max_latency_ms=args.max_latency_ms,
                  latency_batch=args.latency_batch)


def cli_search(args: argparse.Namespace) -> int:
    settings = EvolutionSettings(population=args.population, generations=args.generations, seed=args.seed)
    report = run_search(args.checkpoint, args.task, args.data, args.out, budget_from_args(args, args.checkpoint),
                        settings, recalibrate=not args.no_recalibrate)
    best = report["best"]
    print(f"{args.task}: {report['metric']}={best['metric']:.4f}, params {best['params']:,}, "
          f"FLOPs {best['flops']:,} -> {Path(args.out) / 'search.json'}")
    return 0
