"""Rebuild benchmarks (ratios measured in one run, on synthetic CLUSTERED vectors).

(a) search latency during a rebuild: a gallery of `--n` items behind an `IndexFollower` serving a tuned
    IVF index through the `CoalescingSearcher` (the gateway's search path). An open-loop load of `--qps`
    single-query searches (latency counted from each request's scheduled time, so a stall is not hidden
    by fewer requests) runs for `--steady-s` seconds, then a rebuild is requested and the load continues
    until the follower has swapped the new snapshot in; `--rounds` times, interleaved. Reported: p50/p99
    over all steady and all rebuild windows, their ratio, failed requests. Modes: `inprocess` (the
    embedded default: SQLite store, the job in a gateway thread) and `worker` (Redis store + `ufo worker`
    as its own process; needs redis-server). The searcher keeps the gateway's default 2 ms coalescing
    window, which is most of a lone request's latency.
(b) rebuild time vs item count (`--sizes`, capped by `--max-n`): the whole job (`run_rebuild`: read the
    store, build, tune the operating point, write the snapshot) against FAISS's own build of the same
    index (index_factory + train on the same sample + add) on the same vectors, interleaved in one run.
    Every size gets the ANN factory (flat_below=1) so the comparison is about the same index type.

Data: a Gaussian mixture on the unit sphere (one random unit centre per `--per-centre` items, so every size
has the same density — 10k centres at 1M, as in search_bench; noise of norm ≈ `--sigma`), queries fresh
draws from the same mixture. On uniform random vectors ANN is meaningless.

    .venv/bin/python bench/rebuild_bench.py                          # 100k latency + 10k/100k/1M growth
    .venv/bin/python bench/rebuild_bench.py --max-n 100000 --mode both
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from service.config import IndexSettings, WorkerSettings  # noqa: E402
from service.index import CoalescingSearcher  # noqa: E402
from service.index.build import DEFAULT_TRAIN_SAMPLE, sample_rows  # noqa: E402
from service.store import Item, SQLiteStore, open_store  # noqa: E402
from service.worker import IndexFollower, LocalJobQueue, RedisJobQueue, SnapshotStore  # noqa: E402
from service.worker.rebuild import run_rebuild  # noqa: E402
from service.worker.records import Job  # noqa: E402

log = logging.getLogger("rebuild_bench")
V = "bench/1"


def mixture(n: int, d: int, centres: int, sigma: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """n normalised points around `centres` random unit centres (the centres depend on their count only)."""
    c = np.random.default_rng(centres).standard_normal((centres, d), dtype=np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = c[rng.integers(0, centres, m)] + (sigma / np.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


async def fill(store: object, xb: np.ndarray, start: int = 0, batch: int = 5000) -> None:
    """Enroll rows of xb as items start.. in batches."""
    for s in range(0, len(xb), batch):
        rows = xb[s : s + batch]
        await store.upsert([Item(f"i{start + s + k:08d}", rows[k], {}, V) for k in range(len(rows))])  # type: ignore[attr-defined]


# -- (a) latency during a rebuild ---------------------------------------------------------------------------


@dataclass
class Window:
    latencies: list[float]
    failures: int = 0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1e3 if self.latencies else float("nan")


async def open_loop(searcher: CoalescingSearcher, xq: np.ndarray, qps: float, until: asyncio.Event,
                    window: Window) -> None:
    """Requests at a fixed rate until `until` is set; latency from each request's scheduled time."""
    t0, i, pending = time.perf_counter(), 0, set()

    async def one(xq_row: np.ndarray, scheduled: float) -> None:
        try:
            result = await searcher.search(xq_row, 10)
            if len(result.hits[0]) != 10:
                raise RuntimeError("short result")
            window.latencies.append(time.perf_counter() - scheduled)
        except Exception as exc:
            window.failures += 1
            if window.failures <= 3:  # say why, not just how many
                log.warning("failed search at %.2f s: %r", time.perf_counter() - t0, exc)

    while not until.is_set():
        scheduled = t0 + i / qps
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(xq[i % len(xq)], scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
    await asyncio.gather(*pending)


async def measure_rebuild_latency(follower: IndexFollower, xq: np.ndarray, args: argparse.Namespace) -> dict:
    """`--rounds` × (a steady window, then a rebuild window from the request to just after the swap), same
    searcher, same load: interleaved, so the shared machine's load drifts over both alike."""
    steady, during, rebuild_s = Window([]), Window([]), []
    async with CoalescingSearcher(follower.index, omp_threads=1) as searcher:
        for _ in range(args.rounds):
            stop = asyncio.Event()
            load = asyncio.create_task(open_loop(searcher, xq, args.qps, stop, steady))
            await asyncio.sleep(args.steady_s)
            stop.set()
            await load
            stop = asyncio.Event()
            swaps, t0 = follower.swaps, time.perf_counter()
            load = asyncio.create_task(open_loop(searcher, xq, args.qps, stop, during))
            await follower.request_rebuild("request")
            while follower.swaps == swaps:
                await asyncio.sleep(0.05)
            rebuild_s.append(time.perf_counter() - t0)
            await asyncio.sleep(0.5)  # a little after the swap: the new index's first searches count too
            stop.set()
            await load
    return {"steady": steady, "during": during, "rebuild_s": float(np.median(rebuild_s)),
            "factory": follower.index.factory, "params": follower.index.search_params}


def latency_settings() -> IndexSettings:
    """ANN at every size (flat_below=1), explicit rebuilds only, no canary: the windows measure the rebuild."""
    return IndexSettings(flat_below=1, canary_interval_s=0, poll_interval_s=0.2, min_rebuild_gap_s=1e9)


async def wait_first_swap(follower: IndexFollower, timeout_s: float = 1800) -> None:
    deadline = time.monotonic() + timeout_s
    while follower.swaps == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the first rebuild did not finish")
        await asyncio.sleep(0.1)


async def latency_inprocess(xb: np.ndarray, xq: np.ndarray, work: Path, args: argparse.Namespace) -> dict:
    opts = latency_settings()
    store = await SQLiteStore.open(work / "store" / "face.sqlite3")
    await fill(store, xb)
    queue = LocalJobQueue(f"sqlite:///{work}/store", SnapshotStore(work / "snapshots"), opts,
                          isolation=args.local_jobs)
    follower = await IndexFollower.open("face", store, queue, opts, model_version=V, dim=xb.shape[1])
    await follower.start()
    await follower.request_rebuild("startup")
    await wait_first_swap(follower)  # steady state = a tuned ANN index built by the same job
    result = await measure_rebuild_latency(follower, xq, args)
    await follower.close()
    await queue.close()
    await store.close()
    return result


def start_redis(work: Path) -> tuple[subprocess.Popen, str]:
    from tests.service.worker.conftest import free_port  # the test suite's helper

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            subprocess.run(["redis-cli", "-p", str(port), "ping"], check=True, capture_output=True)
            break
        except subprocess.CalledProcessError:
            time.sleep(0.05)
    return proc, url


async def latency_worker(xb: np.ndarray, xq: np.ndarray, work: Path, args: argparse.Namespace) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    redis, url = start_redis(work)
    env = os.environ | {"PYTHONPATH": str(ROOT), "UFO_STORE_URL": url, "UFO_DATA_DIR": str(work),
                        "UFO_INDEX__FLAT_BELOW": "1"}  # the same settings as the in-process run
    worker = subprocess.Popen([sys.executable, "-m", "ufo_cli", "worker", "--faiss-threads", "1"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=(work / "worker.log").open("wb"))
    try:
        opts = latency_settings()
        store = await open_store(url, "face")
        await fill(store, xb)
        queue = await RedisJobQueue.open(url, WorkerSettings())
        follower = await IndexFollower.open("face", store, queue, opts, model_version=V, dim=xb.shape[1],
                                            snapshots=SnapshotStore(work / "snapshots"))
        await follower.start()
        await follower.request_rebuild("startup")
        await wait_first_swap(follower)
        result = await measure_rebuild_latency(follower, xq, args)
        await follower.close()
        await queue.close()
        await store.close()
        return result
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        redis.terminate()
        redis.wait(timeout=10)


# -- (b) rebuild time vs item count -----------------------------------------------------------------------


def faiss_own_build(xb: np.ndarray, factory: str) -> float:
    """FAISS alone: index_factory, train on the sample `build_index` uses, add with ids. Seconds."""
    t0 = time.perf_counter()
    index = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        nlist = faiss.extract_index_ivf(index).nlist
        index.train(sample_rows(xb, DEFAULT_TRAIN_SAMPLE * nlist, 1234))
    if isinstance(index, faiss.IndexIVF):
        index.add_with_ids(xb, np.arange(len(xb), dtype=np.int64))
    else:
        faiss.IndexIDMap2(index).add_with_ids(xb, np.arange(len(xb), dtype=np.int64))
    return time.perf_counter() - t0


async def growth(sizes: list[int], work: Path, args: argparse.Namespace) -> list[dict]:
    opts = IndexSettings(flat_below=1, tune_queries=300)  # every size gets the ANN factory
    snapshots = SnapshotStore(work / "growth-snapshots")
    rows = []
    for n in sizes:
        xb_all = mixture(n, args.d, centres_for(n, args), args.sigma, seed=3)
        store = await SQLiteStore.open(work / f"growth-{n}" / "face.sqlite3")
        await fill(store, xb_all)
        repeats = 2 if n <= 100_000 else 1
        ours, theirs, info = [], [], None
        for _ in range(repeats):  # interleaved: the machine's load hits both alike
            info = await run_rebuild(Job("face", "bench"), store, snapshots, opts)
            ours.append(info)
            theirs.append(faiss_own_build(xb_all[:n], info.factory))
            shutil.rmtree(snapshots.root, ignore_errors=True)
        best = min(ours, key=lambda i: i.build_seconds)
        row = {"n": n, "factory": info.factory, "params": best.search_params, "recall": best.recall,
               "ours": best.build_seconds, "ours_faiss": best.faiss_seconds, "faiss": min(theirs)}
        row["ratio"] = row["ours"] / row["faiss"]
        rows.append(row)
        log.info("n=%d: ours %.2f s (FAISS part %.2f s), FAISS alone %.2f s, ratio %.2f", n, row["ours"],
                 row["ours_faiss"], row["faiss"], row["ratio"])
        await store.close()
        shutil.rmtree(work / f"growth-{n}", ignore_errors=True)
        del xb_all
    return rows


def centres_for(n: int, args: argparse.Namespace) -> int:
    return max(1, n // args.per_centre)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(n, [r["ours"] for r in rows], "o-", label="rebuild job (read + build + tune + snapshot)")
    ax.loglog(n, [r["faiss"] for r in rows], "s--", label="FAISS alone (factory + train + add)")
    for r in rows:
        ax.annotate(f"{r['ratio']:.2f}x", (r["n"], r["ours"]), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("items")
    ax.set_ylabel("seconds")
    ax.set_title(f"Index rebuild time vs gallery size (clustered, d={rows[0].get('d', 0)})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    log.info("wrote %s", path)


def print_tables(latency: dict[str, dict], rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\nMachine: {os.cpu_count()} cores (shared with other jobs: timings are noisy); FAISS "
          f"{faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads; clustered vectors: "
          f"one centre per {args.per_centre} items, sigma {args.sigma}, d={args.d}.")
    if latency:
        print("\n| mode | items | index | steady p50 / p99 ms | during rebuild p50 / p99 ms | p99 ratio | failed | "
              "requests | rebuild s (median) | load avg before → after |\n|---|---|---|---|---|---|---|---|---|---|")
        for mode, r in latency.items():
            s, d = r["steady"], r["during"]
            print(f"| {mode} | {args.n} | {r['factory']} [{r['params']}] | {s.pct(50):.2f} / {s.pct(99):.2f} | "
                  f"{d.pct(50):.2f} / {d.pct(99):.2f} | {d.pct(99) / s.pct(99):.2f}x | {s.failures + d.failures} | "
                  f"{len(s.latencies) + len(d.latencies)} | {r['rebuild_s']:.1f} | "
                  f"{r['load'][0]:.2f} → {r['load'][1]:.2f} |")
    if rows:
        print("\n| items | index | operating point | recall@10 | rebuild job s | its FAISS build s | FAISS alone s | "
              "job / FAISS alone | job / its FAISS build |\n|---|---|---|---|---|---|---|---|---|")
        for r in rows:  # the last column cannot be skewed by load changing between the two measurements
            own = r["ours"] / r["ours_faiss"]
            print(f"| {r['n']:,} | {r['factory']} | {r['params']} | {r['recall']:.3f} | {r['ours']:.2f} | "
                  f"{r['ours_faiss']:.2f} | {r['faiss']:.2f} | {r['ratio']:.2f}x | {own:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="items for the latency benchmark")
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--per-centre", type=int, default=100, help="items per mixture centre")
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--qps", type=float, default=100.0, help="open-loop search rate")
    parser.add_argument("--steady-s", type=float, default=10.0, help="steady window per round")
    parser.add_argument("--rounds", type=int, default=3, help="steady + rebuild windows, interleaved")
    parser.add_argument("--mode", choices=("inprocess", "worker", "both"), default="inprocess")
    parser.add_argument("--local-jobs", choices=("process", "thread"), default="process",
                        help="inprocess mode: the gateway's job in a child process (its default) or a thread")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--max-n", type=int, default=1_000_000, help="cap the growth curve's sizes")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--plot", default=str(ROOT / "docs/img/rebuild_growth.png"))
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir, removed after)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("service").setLevel(logging.WARNING)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rebuild-bench-"))
    sizes = [n for n in map(int, args.sizes.split(",")) if n <= args.max_n]
    try:
        latency: dict[str, dict] = {}
        if not args.skip_latency:
            xb = mixture(args.n, args.d, centres_for(args.n, args), args.sigma, seed=1)
            xq = mixture(1000, args.d, centres_for(args.n, args), args.sigma, seed=2)
            for mode in ("inprocess", "worker") if args.mode == "both" else (args.mode,):
                run = latency_inprocess if mode == "inprocess" else latency_worker
                before = os.getloadavg()[0]
                latency[mode] = asyncio.run(run(xb, xq, work / mode, args))
                latency[mode]["load"] = (before, os.getloadavg()[0])  # 1-min load average: a shared machine
            del xb
        rows: list[dict] = []
        if not args.skip_growth and sizes:
            rows = asyncio.run(growth(sizes, work, args))
            for r in rows:
                r["d"] = args.d
            plot(rows, Path(args.plot))
        print_tables(latency, rows, args)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
