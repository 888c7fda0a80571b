"""Search benchmarks (ratios measured in one run, on synthetic CLUSTERED vectors).

(a) coalescing: C concurrent asyncio clients (default 64) searching a VectorIndex through the
    CoalescingSearcher with max_batch=C (coalesced) vs max_batch=1 (one by one, same thread and
    queue): QPS ratio, results checked equal.
(b) ANN vs exact: an IVF-Flat main index whose nprobe is tuned automatically
    (service.index.tune_search_params: FAISS ParameterSpace + OperatingPoints) to recall@10 ≥ target
    on held-out tuning queries, then measured on other held-out queries against exact search
    (IndexFlatIP under the same IDMap2 wrapper the service uses): QPS ratio and recall@10.

Data: a Gaussian mixture on the unit sphere: `--centres` random unit centres (default 10k), each
point = centre + isotropic noise of norm ≈ `--sigma`, L2-normalised; queries are fresh draws from
the same mixture (never database vectors). On uniform random vectors ANN is meaningless.

    .venv/bin/python bench/search_bench.py                 # 1M x 256 (a few minutes on 2 cores)
    .venv/bin/python bench/search_bench.py --n 200000      # smaller
    .venv/bin/python bench/search_bench.py --skip-ann      # only (a)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from service.index import (  # noqa: E402
    CoalescingSearcher,
    VectorIndex,
    build_index,
    exact_knn,
    recall_at_k,
    resolve_factory,
    suggest_nlist,
    tune_search_params,
)

log = logging.getLogger("search_bench")


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    benchmark: str
    setting: str
    qps: float
    ratio: str = ""
    recall: str = ""
    note: str = ""


def make_centres(centres: int, d: int, seed: int) -> np.ndarray:
    """Random unit centres."""
    c = np.random.default_rng(seed).standard_normal((centres, d), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def draw(centres: np.ndarray, n: int, sigma: float, seed: int, chunk: int = 100_000) -> np.ndarray:
    """n normalised points of the mixture, generated in chunks to bound peak memory."""
    rng = np.random.default_rng(seed)
    d = centres.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(0, len(centres), m)]
        x += (sigma / np.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def best_time(fn, repeats: int) -> float:  # noqa: ANN001 - a zero-argument callable
    """Best wall time of `repeats` calls."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# -- (a) coalescing ----------------------------------------------------------------------------


async def run_clients(searcher: CoalescingSearcher, xq: np.ndarray, k: int, rounds: int) -> tuple[float, list]:
    """`rounds` waves of len(xq) concurrent single-query clients; returns (QPS, last wave's results)."""
    results: list = []
    t0 = time.perf_counter()
    for _ in range(rounds):
        results = await asyncio.gather(*(searcher.search(q, k) for q in xq))
    return rounds * len(xq) / (time.perf_counter() - t0), results


def same_results(a: list, b: list) -> bool:
    """Same ids in the same order and scores within float noise (BLAS batches sum differently)."""
    return all(
        [h.id for h in x.hits[0]] == [h.id for h in y.hits[0]] and np.allclose(x.D, y.D, rtol=1e-5, atol=1e-6)
        for x, y in zip(a, b, strict=True)
    )


async def bench_coalescing(index: VectorIndex, xq: np.ndarray, k: int, rounds: int,
                           omp_threads: int | None) -> list[Row]:
    """Coalesced (max_batch = clients) vs two one-by-one baselines on the same index and queries:
    sequential direct calls (no queue, no thread hand-off) and the searcher with max_batch = 1.
    The ratio is taken against the faster baseline."""
    clients = len(xq)
    index.search(xq[0], k)  # warm-up
    t0 = time.perf_counter()
    for _ in range(rounds):
        res_direct = [index.search(q, k) for q in xq]
    qps_direct = rounds * clients / (time.perf_counter() - t0)
    async with CoalescingSearcher(index, max_batch=1, max_delay_s=0.0, omp_threads=omp_threads) as serial:
        await run_clients(serial, xq, k, 1)  # warm-up
        calls0 = index.stats.faiss_calls
        qps_serial, res_serial = await run_clients(serial, xq, k, rounds)
        calls_serial = index.stats.faiss_calls - calls0
    async with CoalescingSearcher(index, max_batch=clients, max_delay_s=0.002, omp_threads=omp_threads) as batched:
        await run_clients(batched, xq, k, 1)
        calls0, batches0 = index.stats.faiss_calls, batched.batches_run
        qps_batched, res_batched = await run_clients(batched, xq, k, rounds)
        calls_batched, batches = index.stats.faiss_calls - calls0, batched.batches_run - batches0
    same = same_results(res_direct, res_batched) and same_results(res_serial, res_batched)
    baseline = max(qps_direct, qps_serial)
    setting = f"{clients} clients, {index.factory}, {index.main_size:,} x {index.dim}"
    return [
        Row("coalescing", f"one by one, sequential direct calls ({setting})", qps_direct,
            f"{qps_direct / baseline:.2f}x", note=f"{rounds * clients} FAISS calls"),
        Row("coalescing", f"one by one, searcher max_batch=1 ({setting})", qps_serial,
            f"{qps_serial / baseline:.2f}x", note=f"{calls_serial} FAISS calls"),
        Row("coalescing", f"coalesced, searcher max_batch={clients} ({setting})", qps_batched,
            f"{qps_batched / baseline:.2f}x",
            note=f"{calls_batched} FAISS calls in {batches} batches; results equal: {same}"),
    ]


# -- (b) ANN vs exact --------------------------------------------------------------------------


def bench_ann(xb: np.ndarray, xq_tune: np.ndarray, xq_eval: np.ndarray, factory: str, k: int,
              target: float, repeats: int, train_per_list: int) -> list[Row]:
    """Exact vs tuned IVF on the same vectors; QPS on one batched search of the eval queries.
    Exact search is timed once (it is slow and steady) and its answer is the ground truth."""
    ids = np.arange(len(xb), dtype=np.int64)
    exact = build_index(xb, ids, "Flat")
    t0 = time.perf_counter()
    _, gt_eval = exact.search(xq_eval, k)
    qps_exact = len(xq_eval) / (time.perf_counter() - t0)
    log.info("exact search: %.0f QPS; computing tuning ground truth", qps_exact)
    _, gt_tune = exact_knn(xq_tune, xb, k)

    resolved = resolve_factory(factory, len(xb))
    nlist = suggest_nlist(len(xb)) if "{nlist}" in factory else None
    t0 = time.perf_counter()
    ann = build_index(xb, ids, resolved, train_sample=train_per_list * nlist if nlist else None)
    build_s = time.perf_counter() - t0
    point = tune_search_params(ann, xq_tune, gt_tune, k=k, target_recall=target)
    t_ann = best_time(lambda: ann.search(xq_eval, k), repeats)
    _, got = ann.search(xq_eval, k)
    recall = recall_at_k(got, gt_eval, k)
    qps_ann = len(xq_eval) / t_ann
    n, d = xb.shape
    return [
        Row("ANN vs exact", f"exact Flat, {n:,} x {d}, batch {len(xq_eval)}", qps_exact, "1.00x", "1.0000"),
        Row("ANN vs exact", f"{resolved} {point.params}, batch {len(xq_eval)}", qps_ann,
            f"{qps_ann / qps_exact:.2f}x", f"{recall:.4f}",
            note=f"tuned to recall@{k} ≥ {target} on {len(xq_tune)} held-out queries "
                 f"(tuning recall {point.recall:.4f}); build {build_s:.1f} s"),
    ]


def print_table(rows: list[Row], header: str) -> None:
    """Markdown table on stdout."""
    print(f"\n{header}\n")
    print("| benchmark | setting | QPS | ratio | recall@10 | note |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r.benchmark} | {r.setting} | {r.qps:,.0f} | {r.ratio} | {r.recall} | {r.note} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="database size for (b) (default 1M)")
    p.add_argument("--d", type=int, default=256, help="dimension (default 256)")
    p.add_argument("--centres", type=int, default=10_000, help="mixture centres (default 10k)")
    p.add_argument("--sigma", type=float, default=0.75, help="noise norm around a centre (default 0.75)")
    p.add_argument("--factory", default="IVF{nlist},Flat", help="ANN factory string ({nlist} = 4·√n)")
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nq-tune", type=int, default=500, help="held-out queries used for tuning")
    p.add_argument("--nq-eval", type=int, default=1000, help="other held-out queries used for measuring")
    p.add_argument("--coalesce-n", type=int, default=100_000, help="database size for (a)")
    p.add_argument("--coalesce-factory", default="Flat")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5, help="waves of concurrent clients in (a)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of the ANN search in (b), best kept")
    p.add_argument("--train-per-list", type=int, default=64,
                   help="IVF training vectors per list when the factory uses {nlist} (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omp-threads", type=int, default=0,
                   help="faiss OpenMP threads, main and search threads (0: faiss's default)")
    p.add_argument("--skip-coalesce", action="store_true")
    p.add_argument("--skip-ann", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.omp_threads:
        faiss.omp_set_num_threads(args.omp_threads)
    centres = make_centres(args.centres, args.d, args.seed)
    rows: list[Row] = []
    t_start = time.perf_counter()
    if not args.skip_coalesce:
        xb = draw(centres, args.coalesce_n, args.sigma, args.seed + 1)
        index = VectorIndex.build([f"i{i}" for i in range(len(xb))], xb, model_version="bench",
                                  factory=args.coalesce_factory, search_params="nprobe=8"
                                  if "IVF" in args.coalesce_factory else "")
        del xb
        xq = draw(centres, args.clients, args.sigma, args.seed + 2)
        rows += asyncio.run(bench_coalescing(index, xq, args.k, args.rounds, args.omp_threads or None))
        del index
    if not args.skip_ann:
        t0 = time.perf_counter()
        xb = draw(centres, args.n, args.sigma, args.seed + 3)
        xq_tune = draw(centres, args.nq_tune, args.sigma, args.seed + 4)
        xq_eval = draw(centres, args.nq_eval, args.sigma, args.seed + 5)
        log.info("generated %d x %d clustered vectors in %.1f s", *xb.shape, time.perf_counter() - t0)
        rows += bench_ann(xb, xq_tune, xq_eval, args.factory, args.k, args.target_recall, args.repeats,
                          args.train_per_list)
    header = (f"search_bench: clustered Gaussian mixture ({args.centres:,} centres, noise norm {args.sigma}), "
              f"d={args.d}, k={args.k}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, "
              f"total {time.perf_counter() - t_start:.0f} s")
    print_table(rows, header)


if __name__ == "__main__":
    main()
