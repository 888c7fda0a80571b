"""Served embedding throughput: 32 concurrent single-image clients through the embedded backend, with the
dynamic batcher and without it (max_batch=1), against the model's best in-process ONNX Runtime throughput.

All numbers come from one run on one machine; each measurement is repeated `--rounds` times, interleaved
(so drift from other load hits every variant alike), and the median is reported. Besides images per wall
second, each path reports images per CPU second of this process (all its threads): on a machine shared with
other work, wall-clock rates swing with the neighbours' load while the CPU-second rate measures our own
efficiency, so the table gives the served / in-process ratio both ways. The served paths include
everything a request pays inside the process: the asyncio client, pixel checks, the batcher's queue and
futures. The in-process reference runs ONNX Runtime directly: `--sessions` 1-thread sessions in parallel
threads, and one session with that many threads, at each batch size in `--batches`; the best is the bar.
Targets (docs/benchmarks.md, summary): served / best in-process ≥ 0.95 on CPU; the batching gain itself ≥ 3× on a GPU.

The default model is the `demo` preset's largest subnet with random weights (fine for throughput),
exported to a temporary repository; `--repository R --task T` measures a real exported model instead.

    .venv/bin/python bench/embed_bench.py [--repository R --task face] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from service.inference.embedded import EmbeddedBackend, make_session  # noqa: E402
from service.inference.repository import load_repository  # noqa: E402


@dataclass(frozen=True)
class Measurement:
    rate: float  # images per wall second
    cpu_rate: float  # images per CPU second of this process
    p50_ms: float = float("nan")
    mean_batch: float = float("nan")


def build_demo_repository(root: Path, task: str) -> Path:
    """Export the demo preset's largest subnet (random weights) for CPU serving; returns the repository."""
    from model_store.export import export_model
    from ufo.model.presets import get_arch
    from ufo.model.static import extract_subnet
    from ufo.model.supernet import UFOSupernet

    arch = get_arch("demo")
    supernet = UFOSupernet(arch, {task: 10}).eval()
    subnet = extract_subnet(supernet, supernet.largest_config(), task).eval()
    repository = root / "repo"
    export_model(subnet, repository, model_name=f"demo_{task}", task=task, input_size=tuple(arch.img_size),
                 architecture={"preset": "demo", "config": "largest"}, kind="cpu")
    return repository


def ort_direct(onnx_path: Path, batch: int, sessions: int, threads: int, seconds: float) -> Measurement:
    """Images/s of `sessions` sessions (`threads` intra-op threads each) running batches in parallel threads."""
    runners = [make_session(onnx_path, threads) for _ in range(sessions)]
    shape = runners[0].get_inputs()[0].shape
    pixels = np.random.default_rng(0).uniform(-1, 1, size=(batch, *shape[1:])).astype(np.float32)
    name = runners[0].get_inputs()[0].name
    for session in runners:
        session.run(None, {name: pixels})  # warm-up
    counts = [0] * sessions
    deadline = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < deadline:
            runners[i].run(None, {name: pixels})
            counts[i] += batch

    started, cpu_started = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(sessions)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return Measurement(sum(counts) / elapsed, sum(counts) / cpu)


async def served(backend: EmbeddedBackend, task: str, clients: int, seconds: float) -> Measurement:
    """`clients` coroutines each embedding one image at a time, for `seconds`."""
    info = backend.model(task)
    pixels = np.random.default_rng(1).uniform(-1, 1, size=(1, *info.input_shape)).astype(np.float32)
    latencies: list[float] = []
    done = 0

    async def client(until: float, record: bool) -> None:
        nonlocal done
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            await backend.embed(task, pixels)
            if record:
                latencies.append(time.perf_counter() - t0)
                done += 1

    await asyncio.gather(*(client(time.perf_counter() + 0.3, False) for _ in range(clients)))  # warm-up
    batcher = backend.batchers[task]
    batches_before, images_before = batcher.batches_run, batcher.images_run
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(started + seconds, True) for _ in range(clients)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    mean_batch = (batcher.images_run - images_before) / max(1, batcher.batches_run - batches_before)
    return Measurement(done / elapsed, done / cpu, 1e3 * statistics.median(latencies), mean_batch)


def measure_served(repository: Path, task: str, args: argparse.Namespace, max_batch: int,
                   max_delay_ms: float | None = None) -> Measurement:
    delay = args.max_delay_ms if max_delay_ms is None else max_delay_ms

    async def run() -> Measurement:
        async with EmbeddedBackend(repository, [task], sessions_per_model=args.sessions, threads_per_session=1,
                                   max_batch=max_batch, max_delay_ms=delay) as backend:
            return await served(backend, task, args.clients, args.seconds)

    return asyncio.run(run())


def median_of(rounds: list[dict[str, Measurement]], key: str) -> Measurement:
    """Field-wise median of one variant's measurements over the rounds."""
    return Measurement(**{f.name: statistics.median(getattr(r[key], f.name) for r in rounds)
                          for f in fields(Measurement)})


def print_report(results: dict[str, Measurement], manifest, args: argparse.Namespace) -> None:
    """The markdown tables: every path, then the two ratios (wall-clock and per CPU second)."""
    batched, unbatched = results["served, batcher"], results["served, no batching (max_batch=1)"]
    direct = {name: m for name, m in results.items() if name.startswith("ORT direct")}
    best = max(direct, key=lambda name: direct[name].rate)
    best_cpu = max(direct, key=lambda name: direct[name].cpu_rate)
    print(f"\nmodel {manifest.model_name}/{manifest.version} ({manifest.task}), input {list(manifest.input_size)}, "
          f"{manifest.params / 1e6:.2f} M params, {manifest.flops / 1e6:.1f} MFLOP/img; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; {args.clients} clients, medians of {args.rounds} rounds × "
          f"{args.seconds:g} s\n")
    print("| path | images/s | images per CPU-s | p50 latency (ms) | mean batch |")
    print("|---|---:|---:|---:|---:|")
    served_rows = [(f"served, batcher (max_delay_ms={args.max_delay_ms:g})", batched),
                   ("served, no batching (max_batch=1)", unbatched)]
    if "served, batcher, max_delay_ms=0" in results:
        served_rows.append(("served, batcher (max_delay_ms=0)", results["served, batcher, max_delay_ms=0"]))
    for name, m in served_rows:
        print(f"| {name} | {m.rate:.0f} | {m.cpu_rate:.0f} | {m.p50_ms:.1f} | {m.mean_batch:.1f} |")
    for name, m in direct.items():
        marks = [label for label, chosen in (("best/s", best), ("best/CPU-s", best_cpu)) if chosen == name]
        note = f" ({', '.join(marks)})" if marks else ""
        print(f"| {name}{note} | {m.rate:.0f} | {m.cpu_rate:.0f} | | |")
    print("\n| ratio | value | target |\n|---|---:|---:|")
    print(f"| served (batcher) / best in-process, images/s | {batched.rate / direct[best].rate:.2f} | ≥ 0.95 (CPU) |")
    print(f"| served (batcher) / best in-process, images per CPU-s | "
          f"{batched.cpu_rate / direct[best_cpu].cpu_rate:.2f} | ≥ 0.95 (CPU) |")
    print(f"| batching gain: batcher / no batching, images/s | {batched.rate / unbatched.rate:.2f} | ≥ 3 (GPU) |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, help="an exported model repository (default: demo preset)")
    parser.add_argument("--task", default="face")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=2, help="ORT sessions (1 thread each) per model")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="direct ORT batch sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        repository = args.repository or build_demo_repository(Path(tmp), args.task)
        entry = load_repository(repository, [args.task])[args.task]
        manifest = entry.manifest
        variants: dict[str, Callable[[], Measurement]] = {
            "served, batcher": lambda: measure_served(repository, args.task, args, args.max_batch),
            "served, no batching (max_batch=1)": lambda: measure_served(repository, args.task, args, 1),
        }
        if args.max_delay_ms > 0:  # the delay's cost or gain, in the same run
            variants["served, batcher, max_delay_ms=0"] = (
                lambda: measure_served(repository, args.task, args, args.max_batch, max_delay_ms=0.0))
        for batch in args.batches:
            variants[f"ORT direct, {args.sessions}x1-thread sessions, batch {batch}"] = (
                lambda b=batch: ort_direct(entry.onnx_path, b, args.sessions, 1, args.seconds))
            variants[f"ORT direct, 1x{args.sessions}-thread session, batch {batch}"] = (
                lambda b=batch: ort_direct(entry.onnx_path, b, 1, args.sessions, args.seconds))
        rounds = []
        for i in range(args.rounds):
            rounds.append({name: run() for name, run in variants.items()})
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
        results = {name: median_of(rounds, name) for name in variants}
    print_report(results, manifest, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
