"""`ufo train`: load the task data, train (or resume), evaluate on held-out identities, write the run folder.

Run folder: checkpoint.pt, train_log.jsonl, metrics.json ({"val"|"test": {task: {metric: value}}}), run.json,
and init_report.json when it started from a pretrained ViT (--init).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from ufo.data.types import TaskData
from ufo.model.supernet import UFOSupernet
from ufo.tasks import parse_tasks
from ufo.train.config import TrainConfig, get_train_config
from ufo.train.evaluate import EvalImages

log = logging.getLogger(__name__)


def load_data(root: str | Path, tasks: tuple[str, ...], val_fraction: float, seed: int) -> dict[str, TaskData]:
    from ufo.datasets import load_task_data

    return {t: load_task_data(t, root, val_fraction=val_fraction, seed=seed) for t in tasks}


def evaluate_supernet(model: UFOSupernet, data: dict[str, TaskData], split: str = "test",
                      cfg: Any = None) -> dict[str, dict[str, float]]:
    """Metrics per task at `cfg` (default: the largest config, router-argmax paths)."""
    model.eval()
    cfg = cfg or model.largest_config()
    device = next(model.parameters()).device
    results = {}
    for task, task_data in data.items():
        images = EvalImages(getattr(task_data, split), model.arch.img_size)
        results[task] = images.score(task, lambda x, t=task: model.embed(x, t, cfg), device=str(device))
    return results


def run_training(cfg: TrainConfig, data_root: str | Path, out_dir: str | Path, resume: bool = False,
                 evaluate: bool = True) -> dict[str, Any]:
    from ufo.train.trainer import Trainer

    started = time.perf_counter()
    out_dir = Path(out_dir)
    data = load_data(data_root, cfg.tasks, cfg.val_fraction, cfg.seed)
    trainer = Trainer(cfg, data, out_dir)
    if resume:
        trainer.resume()
    elif trainer.checkpoint_path.exists():
        raise ValueError(f"{trainer.checkpoint_path} exists: pass --resume to continue it, or choose a new --out")
    try:
        result = trainer.fit()
    finally:
        trainer.close()  # stops streaming loader workers before the evaluation
    summary: dict[str, Any] = {
        "train_config": cfg.to_dict(), "steps": trainer.step, "checkpoint": str(result.checkpoint),
        "train_seconds": round(time.perf_counter() - started, 1),
        "final_loss": result.losses[-1] if result.losses else None,
        "router_paths": {t: list(p) for t, p in result.model.router_paths().items()},
    }
    if evaluate and trainer.rank == 0:
        metrics = {split: evaluate_supernet(result.model, data, split) for split in ("val", "test")}
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        summary["metrics"] = metrics
        for task, m in metrics["test"].items():
            log.info("test %s: %s", task, ", ".join(f"{k}={v:.3f}" for k, v in m.items() if "@far" not in k))
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return summary


def cli_train(args: argparse.Namespace) -> int:
    overrides = dict(
        tasks=parse_tasks(args.tasks), steps=args.steps, batch_per_task=args.batch_per_task, seed=args.seed,
        grad_checkpointing=args.grad_checkpointing or None, data_loader=args.data_loader,
        loader_workers=args.loader_workers, init_from=args.init,
    )
    cfg = get_train_config(args.preset).with_overrides(**{**overrides, **TrainConfig.parse_overrides(args.set)})
    summary = run_training(cfg, args.data, args.out, resume=args.resume, evaluate=not args.no_eval)
    print(f"trained {summary['steps']} steps in {summary['train_seconds']} s -> {summary['checkpoint']}")
    return 0
