"""`ufo report`: the paper's comparison per task — single-task baseline vs multi-task supernet (largest
config) vs trimmed subnet — on the test identities, with params, FLOPs and CPU latency measured in one run.

Run folder layout (what `ufo pipeline` writes):
  supernet/checkpoint.pt               multi-task supernet
  baselines/<task>/checkpoint.pt       single-task baselines (same backbone, same images seen per task)
  search/<task>/search.json            search results
  subnets/<task>.pt                    trimmed subnets
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ufo.data.images import ImageCache
from ufo.data.types import TaskData
from ufo.metrics.baselines import fit_fisherfaces, fit_pixels
from ufo.metrics.evaluate import evaluate_embeddings
from ufo.model.cost import subnet_cost
from ufo.model.static import StaticViT, extract_subnet
from ufo.search.budget import measure_latency_ms
from ufo.search.trim import load_subnet
from ufo.tasks import TASKS, get_task
from ufo.train.checkpoint import load_checkpoint, supernet_from_checkpoint
from ufo.train.evaluate import EvalImages

log = logging.getLogger(__name__)

LATENCY_BATCHES = (1, 32)


def largest_static(checkpoint: Path, task: str) -> tuple[StaticViT, dict[str, Any]]:
    ckpt = load_checkpoint(checkpoint)
    model = supernet_from_checkpoint(checkpoint, ckpt)
    cfg = model.largest_config()
    return extract_subnet(model, cfg, task), ckpt.get("train_config", {})


def measure_latencies(models: dict[str, StaticViT], img_size: tuple[int, int],
                      repeats: int) -> dict[str, dict[int, float]]:
    """Interleaved rounds, so drift in machine load hits every model alike; the median per model."""
    samples: dict[str, dict[int, list[float]]] = {name: {b: [] for b in LATENCY_BATCHES} for name in models}
    for _ in range(repeats):
        for name, module in models.items():
            for b in LATENCY_BATCHES:
                samples[name][b].append(measure_latency_ms(module, img_size, b, repeats=3, warmup=1))
    return {name: {b: sorted(v)[len(v) // 2] for b, v in per.items()} for name, per in samples.items()}


def load_models(run_dir: Path, task: str) -> tuple[dict[str, StaticViT], dict[str, Any], dict[str, Any]]:
    """(static models of the run by role, the supernet's train config, the trimmed subnet's metadata)."""
    supernet, train_cfg = largest_static(run_dir / "supernet" / "checkpoint.pt", task)
    models: dict[str, StaticViT] = {"supernet": supernet}
    baseline_ckpt = run_dir / "baselines" / task / "checkpoint.pt"
    if baseline_ckpt.exists():
        models["single_task"] = largest_static(baseline_ckpt, task)[0]
    subnet_path = run_dir / "subnets" / f"{task}.pt"
    trimmed_meta: dict[str, Any] = {}
    if subnet_path.exists():
        models["trimmed"], trimmed_meta = load_subnet(subnet_path)
    tuned_path = run_dir / "subnets" / f"{task}.finetuned.pt"
    if tuned_path.exists():
        models["trimmed_finetuned"] = load_subnet(tuned_path)[0]
    return models, train_cfg, trimmed_meta


def _task_data(task: str, data_root: str | Path, train_cfg: dict[str, Any]) -> TaskData:
    from ufo.datasets import load_task_data

    return load_task_data(task, data_root, val_fraction=train_cfg.get("val_fraction", 0.2),
                          seed=train_cfg.get("seed", 0))


def _without_counts(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("num_")}


def _scores(task: str, images: EvalImages, module: torch.nn.Module) -> dict[str, float]:
    return _without_counts(images.score(task, module))


def classical_baselines(task: str, data: TaskData, images: EvalImages) -> dict[str, dict[str, float]]:
    """Test metrics of raw pixels and Fisherfaces fitted on the task's training images: the bar a trained
    model must clear to mean anything."""
    train = ImageCache([s.path for s in data.train], images.cache.size)
    train_pixels = train.normalized(np.arange(len(train)))
    labels = np.asarray([s.label for s in data.train])
    test_pixels = images.cache.normalized(np.arange(len(images.cache)))
    out = {}
    for name, embedding in (("pixels", fit_pixels(train_pixels)),
                            ("fisherfaces", fit_fisherfaces(train_pixels, labels))):
        feats = embedding(test_pixels)
        out[name] = _without_counts(evaluate_embeddings(task, feats[images.query_rows], feats[images.gallery_rows],
                                                        images.eval_set))
    return out


def seed_scores(run_dir: Path, task: str, data_root: str | Path) -> dict[str, Any]:
    """Headline test metric of each model of another run (another seed) of the same pipeline."""
    models, train_cfg, _ = load_models(run_dir, task)
    images = EvalImages(_task_data(task, data_root, train_cfg).test, models["supernet"].arch.img_size)
    return {"run": str(run_dir), "seed": train_cfg.get("seed"),
            "metrics": {name: _scores(task, images, m) for name, m in models.items()}}


def report_task(run_dir: Path, task: str, data_root: str | Path, repeats: int = 3,
                compare_runs: tuple[Path, ...] = ()) -> dict[str, Any]:
    models, train_cfg, trimmed_meta = load_models(run_dir, task)
    supernet = models["supernet"]
    data = _task_data(task, data_root, train_cfg)
    images = EvalImages(data.test, supernet.arch.img_size)
    latency = measure_latencies(models, supernet.arch.img_size, repeats)
    rows = {}
    for name, module in models.items():
        cost = subnet_cost(module.arch, module.cfg)
        rows[name] = {"metrics": _scores(task, images, module), "params": cost.params, "flops": cost.flops,
                      "config": module.cfg.to_dict(),
                      "latency_ms": {f"batch{b}": round(v, 3) for b, v in latency[name].items()}}
    result: dict[str, Any] = {"task": task, "metric": get_task(task).metric, "models": rows,
                              "classical": classical_baselines(task, data, images)}
    result["seeds"] = [{"run": str(run_dir), "seed": train_cfg.get("seed"),
                        "metrics": {name: row["metrics"] for name, row in rows.items()}}]
    result["seeds"] += [seed_scores(Path(other), task, data_root) for other in compare_runs]
    if "trimmed" in rows:
        result["trimmed_vs_supernet"] = {
            "params_ratio": rows["trimmed"]["params"] / rows["supernet"]["params"],
            "flops_ratio": rows["trimmed"]["flops"] / rows["supernet"]["flops"],
            "latency_ratio_batch1": latency["trimmed"][1] / latency["supernet"][1],
            "latency_ratio_batch32": latency["trimmed"][32] / latency["supernet"][32],
        }
        search_json = run_dir / "search" / task / "search.json"
        if search_json.exists():
            result["bn_recalibration"] = json.loads(search_json.read_text())["bn_recalibration"]
        result["trimmed_meta"] = {k: v for k, v in trimmed_meta.items() if k in (
            "source_checkpoint_hash", "val_metric", "bn_recalibrated", "finetuned")}
    return result


def copy_search_plots(run_dir: Path, tasks: tuple[str, ...], img_dir: Path) -> list[Path]:
    """The searches' Pareto plots beside the report (the run folder itself is not published)."""
    copied = []
    for task in tasks:
        plot = run_dir / "search" / task / "pareto.png"
        if plot.exists():
            copied.append(img_dir / f"pareto_{task}.png")
            shutil.copyfile(plot, copied[-1])
    return copied


def build_report(run_dir: str | Path, data_root: str | Path, out_dir: str | Path = "docs",
                 tasks: tuple[str, ...] | None = None, repeats: int = 3,
                 compare_runs: tuple[str | Path, ...] = ()) -> dict[str, Any]:
    """The report of `run_dir` (the run whose subnets are exported), with the headline metrics of
    `compare_runs` (the same pipeline at other seeds) beside it for the spread."""
    from ufo.report.render import render_charts, render_markdown

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    started = time.perf_counter()
    ckpt = load_checkpoint(run_dir / "supernet" / "checkpoint.pt")
    tasks = tasks or tuple(t for t in TASKS if t in ckpt["tasks"])
    torch.manual_seed(0)
    report = {
        "run_dir": str(run_dir), "data_root": str(data_root), "machine": f"{platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}",
        "train_config": ckpt.get("train_config"),
        "tasks": {t: report_task(run_dir, t, data_root, repeats, tuple(Path(r) for r in compare_runs)) for t in tasks},
    }
    supernet_run = run_dir / "supernet" / "run.json"
    if supernet_run.exists():
        report["supernet_run"] = {k: v for k, v in json.loads(supernet_run.read_text()).items() if k != "metrics"}
    pipeline_json = run_dir / "pipeline.json"
    if pipeline_json.exists():
        report["pipeline"] = json.loads(pipeline_json.read_text())
    data_readme = Path(data_root) / "README.md"
    report["data_notes"] = data_readme.read_text() if data_readme.exists() else ""
    report["report_seconds"] = round(time.perf_counter() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    charts = render_charts(report, out_dir / "img") + copy_search_plots(run_dir, tasks, out_dir / "img")
    (out_dir / "results.md").write_text(render_markdown(report, charts, out_dir))
    log.info("report -> %s", out_dir / "results.md")
    return report


def cli_report(args: argparse.Namespace) -> int:
    build_report(args.run, args.data, args.out, repeats=args.repeats, compare_runs=tuple(args.compare))
    print(f"wrote {Path(args.out) / 'results.md'} and results.json")
    return 0
