"""Soak test: a fixed mixed load (search, enroll, delete, embed) against a real `ufo serve` for a set time.

Requests are sent open-loop at `--rate` per second (a schedule fixed in advance, so a slow server is not
offered less work), at most `--concurrency` in flight, in a fixed mix: search by a raw image, embed one
image as base64 JSON, enroll one item (PUT, raw image, metadata), delete an enrolled item. Enrolls and
deletes alternate once the gallery holds `--gallery` items, so it stays the same size. The server's RSS is
read from /proc every second. Reported: errors (any answer other than the expected status, or a transport
error), RSS growth after the warm-up, and p50/p99 latency per window (default one minute) per operation.

Goals (issue 15): 0 errors, RSS growth < 10% after warm-up, p99 stable across windows.

    .venv/bin/python bench/soak.py --minutes 10 --out soak.json      # the full soak (about 11 minutes)
    .venv/bin/python bench/soak.py --seconds 20 --warmup-s 5 --window-s 5   # a smoke run (tests/test_soak_smoke.py)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gateway_bench, run as a script from anywhere

from gateway_bench import face_like_image, gateway  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RAW = {"content-type": "application/octet-stream"}
MIX = ("search", "search", "embed", "enroll", "search", "delete", "search", "embed", "enroll", "delete")
EXPECTED = {"search": 200, "embed": 200, "enroll": 200, "delete": 204}


@dataclass
class Record:
    """What the load saw: latencies per (window, operation), errors, RSS samples (seconds, bytes)."""

    window_s: float
    latencies: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)

    def ok(self, started: float, op: str, seconds: float) -> None:
        self.latencies[(int(started // self.window_s), op)].append(seconds)

    def error(self, op: str, what: str) -> None:
        self.errors[op] += 1
        if len(self.error_examples) < 10:
            self.error_examples.append(f"{op}: {what}"[:300])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Load:
    """The operations, with the ids enrolled so far (the oldest is deleted next)."""

    def __init__(self, http: httpx.AsyncClient, task: str, gallery: int) -> None:
        self.http, self.task, self.gallery = http, task, gallery
        self.images = [face_like_image(seed) for seed in range(32)]
        self.enrolled: list[str] = []
        self.pending_deletes = 0
        self.next_id = 0

    def image(self, n: int) -> bytes:
        return self.images[n % len(self.images)]

    def choose(self, n: int) -> str:
        """The n-th operation of the fixed mix; an enroll instead of a delete while the gallery is filling."""
        op = MIX[n % len(MIX)]
        if op == "delete" and len(self.enrolled) - self.pending_deletes <= self.gallery:
            return "enroll"
        return op

    async def send(self, op: str, n: int) -> httpx.Response:
        path = f"/v1/tasks/{self.task}"
        if op == "search":
            return await self.http.post(f"{path}/search", content=self.image(n), headers=RAW, params={"k": 5})
        if op == "embed":
            return await self.http.post(f"{path}/embed", json={"images": [base64.b64encode(self.image(n)).decode()]})
        if op == "enroll":
            item_id, self.next_id = f"soak/{self.next_id}", self.next_id + 1
            response = await self.http.put(f"{path}/items/{item_id}", content=self.image(n), headers=RAW,
                                           params={"metadata": json.dumps({"n": n, "kind": "soak"})})
            if response.status_code == 200:
                self.enrolled.append(item_id)
            return response
        self.pending_deletes += 1
        try:
            return await self.http.delete(f"{path}/items/{self.enrolled.pop(0)}")
        finally:
            self.pending_deletes -= 1


async def drive(url: str, pid: int, args: argparse.Namespace, record: Record) -> int:
    """Send the schedule for `args.seconds`; sample RSS every second. Returns the number of requests sent."""
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        load = Load(http, args.task, args.gallery)
        slots = asyncio.Semaphore(args.concurrency)
        start = time.perf_counter()

        async def one(n: int, op: str) -> None:
            async with slots:
                began = time.perf_counter()
                try:
                    response = await load.send(op, n)
                except httpx.HTTPError as exc:
                    record.error(op, f"{type(exc).__name__}: {exc}")
                    return
                if response.status_code != EXPECTED[op]:
                    record.error(op, f"{response.status_code} {response.text}")
                else:
                    record.ok(began - start, op, time.perf_counter() - began)

        async def sample_rss() -> None:
            while True:
                record.rss.append((time.perf_counter() - start, rss_bytes(pid)))
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample_rss())
        tasks: set[asyncio.Task] = set()
        n = 0
        while (due := start + n / args.rate) < start + args.seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(one(n, load.choose(n)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
        sampler.cancel()
        record.rss.append((time.perf_counter() - start, rss_bytes(pid)))
    return n


def summarise(record: Record, args: argparse.Namespace, sent: int) -> dict:
    """The report: errors, RSS after warm-up, latency per window and operation."""
    after = [b for t, b in record.rss if t >= args.warmup_s] or [record.rss[-1][1]]
    windows = []
    for w in sorted({w for w, _ in record.latencies}):
        row: dict = {"window": w, "from_s": w * args.window_s}
        in_window = [b for t, b in record.rss if w * args.window_s <= t < (w + 1) * args.window_s]
        row["rss_mb"] = (in_window or [record.rss[-1][1]])[-1] / 2**20  # at the window's end
        every = [x for (win, _), xs in record.latencies.items() if win == w for x in xs]
        row["all"] = {"count": len(every), "p50_ms": 1e3 * float(np.percentile(every, 50)),
                      "p99_ms": 1e3 * float(np.percentile(every, 99))}
        for op in EXPECTED:
            xs = record.latencies.get((w, op), [])
            if xs:
                row[op] = {"count": len(xs), "p99_ms": 1e3 * float(np.percentile(xs, 99))}
        windows.append(row)
    p99s = [row["all"]["p99_ms"] for row in windows if row["from_s"] >= args.warmup_s] or [0.0]
    return {
        "seconds": args.seconds, "rate_per_s": args.rate, "concurrency": args.concurrency, "requests": sent,
        "answered_ok": sum(len(xs) for xs in record.latencies.values()),
        "errors": sum(record.errors.values()), "errors_by_op": dict(record.errors),
        "error_examples": record.error_examples,
        "rss": {"samples": len(record.rss), "start_mb": record.rss[0][1] / 2**20,
                "after_warmup_mb": after[0] / 2**20, "end_mb": after[-1] / 2**20, "max_mb": max(after) / 2**20,
                "growth_after_warmup": after[-1] / after[0] - 1.0},
        "p99_ms_after_warmup": {"min": min(p99s), "max": max(p99s), "max_over_min": max(p99s) / max(min(p99s), 1e-9)},
        "windows": windows, "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "demo" / "models")
    parser.add_argument("--task", default="face")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, help="duration in seconds (instead of --minutes)")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="RSS growth is measured from here on")
    parser.add_argument("--window-s", type=float, default=60.0, help="latency percentiles per window")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, open loop")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    parser.add_argument("--gallery", type=int, default=200, help="items kept enrolled (enroll/delete alternate)")
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or 60.0 * args.minutes
    for name in ("seconds", "rate", "window_s"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    if args.warmup_s >= args.seconds:
        parser.error("--warmup-s must be shorter than the run")
    if not (args.repository / f"ufo_{args.task}").is_dir():
        parser.error(f"{args.repository} holds no model ufo_{args.task}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = Record(args.window_s)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, gateway(args.repository, Path(tmp)) as (url, pid):
        sent = asyncio.run(drive(url, pid, args, record))
    report = summarise(record, args, sent)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    rss, p99 = report["rss"], report["p99_ms_after_warmup"]
    print(f"{sent} requests in {args.seconds:g} s, {report['errors']} errors {report['errors_by_op']}; RSS "
          f"{rss['after_warmup_mb']:.1f} -> {rss['end_mb']:.1f} MB after warm-up "
          f"({100 * rss['growth_after_warmup']:+.1f}%, max {rss['max_mb']:.1f}); "
          f"p99 per window {p99['min']:.1f}..{p99['max']:.1f} ms")
    for line in report["error_examples"]:
        print("  error:", line)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
