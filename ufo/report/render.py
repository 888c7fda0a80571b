"""Render the comparison report as Markdown and PNG charts. The verdict lines are computed from the numbers,
so the text says plainly where the paper's claim does or does not reproduce."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MODELS = (("single_task", "single-task baseline"), ("supernet", "multi-task supernet (largest)"),
          ("trimmed", "trimmed subnet (no fine-tune)"), ("trimmed_finetuned", "trimmed + short fine-tune"))
CLASSICAL = (("pixels", "raw pixels, centred on the training mean"),
             ("fisherfaces", "Fisherfaces (PCA to 95% variance + LDA)"))
SEED_MODELS = ("single_task", "supernet", "trimmed")
QUANTITIES = (("metric", "test metric"), ("params", "params (M)"), ("flops", "GFLOPs / image"),
              ("batch1", "CPU latency, batch 1 (ms)"), ("batch32", "CPU latency, batch 32 (ms)"))


def _value(row: dict[str, Any], quantity: str, metric: str) -> float:
    if quantity == "metric":
        return row["metrics"][metric]
    if quantity == "params":
        return row["params"] / 1e6
    if quantity == "flops":
        return row["flops"] / 1e9
    return row["latency_ms"][quantity]


def render_charts(report: dict[str, Any], img_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    img_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(report["tasks"])
    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(4 * len(QUANTITIES), 3.6))
    width = 0.8 / len(MODELS)
    for ax, (quantity, label) in zip(axes, QUANTITIES, strict=True):
        for i, (key, name) in enumerate(MODELS):
            values = [_value(report["tasks"][t]["models"][key], quantity, report["tasks"][t]["metric"])
                      if key in report["tasks"][t]["models"] else np.nan for t in tasks]
            ax.bar(np.arange(len(tasks)) + (i - (len(MODELS) - 1) / 2) * width, values, width, label=name)
        ax.set_xticks(np.arange(len(tasks)), tasks)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = img_dir / "results.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def _verdict(task: str, entry: dict[str, Any]) -> str:
    rows, metric = entry["models"], entry["metric"]
    if "trimmed" not in rows:
        return f"- **{task}**: no trimmed subnet in this run."
    trimmed = rows["trimmed"]["metrics"][metric]
    parts = [f"- **{task}** ({metric}): trimmed {trimmed:.3f}"]
    ratio = entry["trimmed_vs_supernet"]
    if "single_task" in rows:
        base = rows["single_task"]["metrics"][metric]
        delta = 100 * (trimmed - base)
        holds = "the claim holds" if delta >= 0 else "the claim does NOT hold here"
        parts.append(f"vs single-task {base:.3f} ({delta:+.1f} pts: {holds})")
    sup = rows["supernet"]["metrics"][metric]
    parts.append(f"vs supernet {sup:.3f} ({100 * (trimmed - sup):+.1f} pts)")
    parts.append(f"at {ratio['params_ratio']:.0%} of the supernet's params, {ratio['flops_ratio']:.0%} of its FLOPs, "
                 f"{ratio['latency_ratio_batch1']:.2f}x its batch-1 latency")
    if "trimmed_finetuned" in rows:
        tuned = rows["trimmed_finetuned"]["metrics"][metric]
        parts.append(f"a short fine-tune gives {tuned:.3f} ({100 * (tuned - trimmed):+.1f} pts: "
                     f"{'it helps' if tuned > trimmed else 'it does not help'})")
    return ", ".join(parts) + "."


def _summary(report: dict[str, Any]) -> str:
    """One plain sentence on UFO's claim: the trimmed subnet (no fine-tune) matches or beats the single-task model."""
    holds, fails = [], []
    for task, entry in report["tasks"].items():
        rows = entry["models"]
        if "trimmed" in rows and "single_task" in rows:
            metric = entry["metric"]
            better = rows["trimmed"]["metrics"][metric] >= rows["single_task"]["metrics"][metric]
            (holds if better else fails).append(task)
    return (f"UFO's claim — a subnet trimmed from the multi-task supernet, with no fine-tuning, is at least as "
            f"accurate as a single-task model of the supernet's full size — holds here on {len(holds)} of "
            f"{len(holds) + len(fails)} tasks ({', '.join(holds) or 'none'}) and does not on "
            f"{', '.join(fails) or 'none'}. These are small models trained from scratch for minutes on 2 CPU "
            "cores, on the data described at the end; they show the pipeline's behaviour, not the paper's numbers.")


def _seed_values(entry: dict[str, Any], model: str) -> list[float]:
    return [run["metrics"][model][entry["metric"]] for run in entry.get("seeds", []) if model in run["metrics"]]


def seed_section(report: dict[str, Any]) -> list[str]:
    """The headline metric of every run (seed) side by side, with the mean and the spread (max - min), and
    the claim counted per seed and on the means: a verdict that is not one seed's luck."""
    entries = report["tasks"]
    seeds = [run.get("seed") for run in next(iter(entries.values())).get("seeds", [])]
    if len(seeds) < 2:
        return []
    lines = ["## Over seeds", "", f"The same pipeline run with seeds {', '.join(map(str, seeds))} (the first is "
             "the run above, whose subnets are exported); test metric per run, mean and spread (max - min).", "",
             "| task | model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | spread |",
             "|---|---|" + "---:|" * (len(seeds) + 2)]
    holds_per_seed = [0] * len(seeds)
    holds_on_mean = []
    for task, entry in entries.items():
        for model in SEED_MODELS:
            values = _seed_values(entry, model)
            if len(values) == len(seeds):
                lines.append(f"| {task} | {dict(MODELS)[model]} | " + " | ".join(f"{v:.4f}" for v in values)
                             + f" | {sum(values) / len(values):.4f} | {max(values) - min(values):.4f} |")
        trimmed, single = _seed_values(entry, "trimmed"), _seed_values(entry, "single_task")
        if len(trimmed) == len(single) == len(seeds):
            for i, (t, b) in enumerate(zip(trimmed, single, strict=True)):
                holds_per_seed[i] += t >= b
            if sum(trimmed) >= sum(single):
                holds_on_mean.append(task)
    lines += ["", f"Trimmed >= single-task on the mean over seeds: {len(holds_on_mean)} of {len(entries)} tasks "
              f"({', '.join(holds_on_mean) or 'none'}); per seed: "
              + ", ".join(f"seed {s}: {n} of {len(entries)}" for s, n in zip(seeds, holds_per_seed, strict=True))
              + ".", ""]
    return lines


def render_markdown(report: dict[str, Any], charts: list[Path], out_dir: Path) -> str:
    lines = ["# UFO on the demo data: single-task vs multi-task supernet vs trimmed subnet", "",
             "Generated by `ufo report` (part of `ufo pipeline --preset demo`); the same numbers are in "
             "`results.json`. Metrics are on the TEST identities, never seen in training or search (the search "
             "scored on validation identities held out from the training identities).", "",
             f"Machine: {report['machine']}.", ""]
    run = report.get("supernet_run")
    if run:
        lines += [f"Supernet training: {run.get('steps')} steps in {run.get('train_seconds')} s "
                  f"(batch {run['train_config']['batch_per_task']} per task, sandwich "
                  f"{'+'.join(run['train_config']['sandwich'])}).", ""]
    pipe = report.get("pipeline")
    if pipe:
        lines += [f"Stage times of the last `ufo pipeline` invocation, {pipe.get('total_seconds')} s in all (stages an "
                  "earlier invocation finished were skipped and are not listed): "
                  f"{', '.join(f'{k} {v} s' for k, v in pipe.get('stage_seconds', {}).items())}.", ""]
    lines += ["## Verdict per task", "", _summary(report), ""]
    lines += [_verdict(t, e) for t, e in report["tasks"].items()] + [""]
    for task, entry in report["tasks"].items():
        metric = entry["metric"]
        keys = [k for k in entry["models"]["supernet"]["metrics"] if "@far" not in k and "std" not in k]
        lines += [f"## {task}", "", "| model | " + " | ".join(keys) + " | params | GFLOPs | ms @1 | ms @32 |",
                  "|---|" + "---|" * (len(keys) + 4)]
        for key, name in MODELS:
            if key not in entry["models"]:
                continue
            row = entry["models"][key]
            cells = [f"{row['metrics'][k]:.4f}" for k in keys]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['params'] / 1e6:.3f} M | "
                         f"{row['flops'] / 1e9:.4f} | {row['latency_ms']['batch1']:.2f} | "
                         f"{row['latency_ms']['batch32']:.2f} |")
        for key, name in CLASSICAL:
            if key in entry.get("classical", {}):
                cells = [f"{entry['classical'][key].get(k, float('nan')):.4f}" for k in keys]
                lines.append(f"| {name} | " + " | ".join(cells) + " | — | — | — | — |")
        recal = entry.get("bn_recalibration")
        if recal:
            lines += ["", f"BN recalibration during search: validation {metric} of the chosen subnet "
                          f"{recal['best_metric_with']:.4f} with vs {recal['best_metric_without']:.4f} without "
                          f"({'it helped' if recal['helped'] else 'it did not help'}; "
                          f"{'used' if recal['used'] else 'not used'})."]
        if "trimmed" in entry["models"]:
            lines += ["", f"Trimmed config: `{entry['models']['trimmed']['config']}`"]
        lines.append("")
    lines += seed_section(report)
    lines += ["## Charts", ""] + [f"![{p.stem}]({os.path.relpath(p, out_dir)})" for p in charts] + [""]
    if report.get("data_notes"):
        lines += ["## Data (which parts are real, which synthetic)", "", report["data_notes"].replace("# ", "### "), ""]
    return "\n".join(lines)
