"""FAISS vs Milvus Lite, side by side in one run, on the same clustered vectors (issue 13).

Engines, each through the service's own code:
  faiss-ivf    `VectorIndex.build` with the gateway's default ANN factory (IndexSettings.ann_factory,
               IVF{nlist},Flat), nprobe tuned by `tune_search_params` (FAISS ParameterSpace), as rebuilds do;
  faiss-hnsw   the same with HNSW32 (efSearch tuned), the graph type Milvus uses below;
  milvus-hnsw  `MilvusCatalog.create` (HNSW M=32, efConstruction=200 above flat_below) and `MilvusIndex.upsert`,
               i.e. the pymilvus client a Milvus cluster is driven with, on an embedded Milvus Lite file. The
               bench tunes `ef` on its own held-out queries (the engine's `MilvusCatalog.tune` does the same
               on midpoint queries when a gateway fills a collection) and also reports the engine's search
               at Milvus's default ef (64: the engine's own before it is tuned).

Per engine: build time (Milvus: insert + flush, which builds the per-segment indexes); the cheapest search
parameter reaching recall@k >= target on held-out tuning queries; recall and QPS on other held-out queries
(batched calls of --batch queries, and one query per call); p50/p99 of one-query searches in a steady window
and in a window while a writer thread streams upserts of new items at --write-rate.

milvus-lite 3.2.2 is a Python reimplementation of Milvus (a gRPC server in threads of this process, FAISS
HNSW per segment of <= 100k rows underneath), not the Milvus server: these numbers are for the local dev mode.

Data: a Gaussian mixture on the unit sphere (bench/search_bench.py's `make_centres` / `draw`); queries are
fresh draws, never database vectors.

    .venv/bin/python bench/milvus_bench.py                          # 1M x 256, all engines
    .venv/bin/python bench/milvus_bench.py --n 200000 --engines faiss-ivf,milvus-hnsw
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # run from a checkout without installing

from search_bench import draw, make_centres  # noqa: E402

from service.config import IndexSettings  # noqa: E402
from service.index import VectorIndex, exact_knn, recall_at_k, tune_search_params  # noqa: E402

log = logging.getLogger("milvus_bench")
V = "bench/1"
ENGINES = ("faiss-ivf", "faiss-hnsw", "milvus-hnsw")
EF_STEPS = (10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def positions(ids: np.ndarray) -> np.ndarray:
    """Item ids "i00000042" -> row positions 42 (-1 for padding or streamed items)."""
    return np.array([[int(i[1:]) if isinstance(i, str) and i[0] == "i" else -1 for i in row] for row in ids])


class FaissEngine:
    """`VectorIndex` (the FAISS engine) with a FAISS factory string."""

    def __init__(self, factory: str, k: int):
        self.factory, self.k, self.index = factory, k, None

    def build(self, ids: list[str], xb: np.ndarray) -> dict:
        t0 = time.perf_counter()
        self.index = VectorIndex.build(ids, xb, model_version=V, factory=self.factory)
        return {"build_s": time.perf_counter() - t0}

    def tune(self, xq: np.ndarray, gt: np.ndarray, target: float) -> str:
        point = tune_search_params(self.index.main, xq, gt, k=self.k, target_recall=target)
        self.index.set_search_params(point.params)
        return point.params or "(none)"

    def search(self, xq: np.ndarray) -> np.ndarray:
        return self.index.search(xq, self.k, model_version=V).I

    def upsert(self, ids: list[str], x: np.ndarray) -> None:
        self.index.upsert(ids, x, model_version=V)

    def close(self, drop: bool) -> None:
        self.index = None


class MilvusEngine:
    """`MilvusIndex` from `MilvusCatalog` on a Milvus Lite file (or a server URI)."""

    def __init__(self, uri: str, k: int, flat_below: int):
        from service.index.milvus_catalog import MilvusCatalog
        from service.index.milvus_settings import MilvusSettings

        self.catalog = MilvusCatalog(MilvusSettings(uri=uri, timeout_s=3600), flat_below=flat_below)
        self.k, self.ef, self.index = k, None, None

    def build(self, ids: list[str], xb: np.ndarray, batch: int = 5000) -> dict:
        t0 = time.perf_counter()
        self.index = self.catalog.create("bench", V, xb.shape[1], n_expected=len(xb))
        for s in range(0, len(xb), batch):
            self.index.upsert(ids[s : s + batch], xb[s : s + batch], model_version=V)
        t1 = time.perf_counter()
        client, name = self.catalog.client, self.index.collection
        client.flush(name)
        while (info := client.describe_index(name, "vector"))["indexed_rows"] < info["total_rows"]:
            time.sleep(0.2)
        t2 = time.perf_counter()
        self.catalog.settle_lite(name)
        t3 = time.perf_counter()
        log.info("milvus index %s", info)
        return {"build_s": t3 - t0, "insert_s": t1 - t0, "flush_index_s": t2 - t1, "settle_s": t3 - t2,
                "index_type": info["index_type"]}

    def _search_ef(self, xq: np.ndarray, ef: int | None) -> np.ndarray:
        """MilvusIndex.search_prepared's call at the bench's own `ef`."""
        params = {"metric_type": "IP"} | ({"params": {"ef": ef}} if ef else {})
        found = self.catalog.client.search(self.index.collection, data=xq.tolist(), limit=self.k,
                                           output_fields=["metadata"], search_params=params,
                                           consistency_level="Strong")
        out = np.full((len(xq), self.k), None, dtype=object)
        for q, answer in enumerate(found):
            for j, hit in enumerate(answer):
                out[q, j] = hit["id"]
        return out

    def engine_search(self, xq: np.ndarray) -> np.ndarray:
        """The engine's own search (`MilvusIndex.search`, untuned here: Milvus's default ef)."""
        return self.index.search(xq, self.k, model_version=V).I

    def tune(self, xq: np.ndarray, gt: np.ndarray, target: float) -> str:
        best = None
        for ef in (e for e in EF_STEPS if e >= self.k):
            recall = recall_at_k(positions(self._search_ef(xq, ef)), gt, self.k)
            log.info("milvus ef=%d: recall@%d %.4f", ef, self.k, recall)
            best = (ef, recall) if best is None or recall > best[1] else best
            if recall >= target:
                best = (ef, recall)
                break
        self.ef = best[0]
        return f"ef={self.ef}"

    def search(self, xq: np.ndarray) -> np.ndarray:
        return self._search_ef(xq, self.ef)

    def upsert(self, ids: list[str], x: np.ndarray) -> None:
        self.index.upsert(ids, x, model_version=V)

    def close(self, drop: bool) -> None:
        try:
            if drop and self.index is not None:  # a server's collection; a Lite file goes with --workdir
                self.catalog.client.drop_collection(self.index.collection)
        except Exception as exc:  # the measurements are kept either way
            log.warning("could not drop %s: %s", self.index.collection, exc)
        self.catalog.close()


def batched(engine, xq: np.ndarray, batch: int) -> tuple[np.ndarray, float]:  # noqa: ANN001
    """All of xq in calls of `batch` queries: (ids, seconds)."""
    t0 = time.perf_counter()
    out = [engine.search(xq[s : s + batch]) for s in range(0, len(xq), batch)]
    return np.concatenate(out), time.perf_counter() - t0


def one_by_one(engine, xq: np.ndarray, seconds: float) -> list[float]:  # noqa: ANN001
    """One-query calls cycling over xq for `seconds` (at least one pass of min(len(xq), 50)): latencies."""
    lat, t_end, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < t_end or i < min(len(xq), 50):
        t0 = time.perf_counter()
        engine.search(xq[i % len(xq) : i % len(xq) + 1])
        lat.append(time.perf_counter() - t0)
        i += 1
    return lat


class Writer(threading.Thread):
    """Upserts new items (ids w...) at `rate` items/s in batches of `batch` until stopped."""

    def __init__(self, engine, xw: np.ndarray, rate: float, batch: int):  # noqa: ANN001
        super().__init__(daemon=True)
        self.engine, self.xw, self.rate, self.batch = engine, xw, rate, batch
        self.stop, self.written, self.error = threading.Event(), 0, None

    def run(self) -> None:
        t0 = time.perf_counter()
        try:
            while not self.stop.is_set() and self.written + self.batch <= len(self.xw):
                due = t0 + self.written / self.rate
                if (wait := due - time.perf_counter()) > 0 and self.stop.wait(wait):
                    break
                rows = range(self.written, self.written + self.batch)
                self.engine.upsert([f"w{r:08d}" for r in rows], self.xw[rows.start : rows.stop])
                self.written += self.batch
        except Exception as exc:  # reported in the results, not swallowed
            self.error = repr(exc)
        self.seconds = time.perf_counter() - t0


def pct(lat: list[float], q: float) -> float:
    return float(np.percentile(np.array(lat) * 1e3, q))


def run_engine(name: str, data: dict, args: argparse.Namespace, work: Path) -> dict:
    k = args.k
    if name == "milvus-hnsw":
        engine = MilvusEngine(args.milvus_uri or str(work / "milvus.db"), k, args.flat_below)
    else:
        engine = FaissEngine(IndexSettings().ann_factory if name == "faiss-ivf" else "HNSW32", k)
    row = {"engine": name}
    try:
        row |= engine.build(data["ids"], data["xb"])
        log.info("%s: built in %.1f s", name, row["build_s"])
        row["params"] = engine.tune(data["xq_tune"], data["gt_tune"], args.target_recall)
        if isinstance(engine, MilvusEngine):
            row["engine_default_recall"] = recall_at_k(positions(engine.engine_search(data["xq_eval"])),
                                                       data["gt_eval"], k)
        found, seconds = batched(engine, data["xq_eval"], args.batch)
        row["recall"] = recall_at_k(positions(found), data["gt_eval"], k)
        row["qps_batched"] = len(data["xq_eval"]) / seconds
        steady = one_by_one(engine, data["xq_eval"], args.window_s)
        row["qps_single"] = len(steady) / sum(steady)
        writer = Writer(engine, data["xw"], args.write_rate, args.write_batch)
        writer.start()
        streaming = one_by_one(engine, data["xq_eval"], args.window_s)
        writer.stop.set()
        writer.join()
        row |= {"p50_steady_ms": pct(steady, 50), "p99_steady_ms": pct(steady, 99),
                "p50_writes_ms": pct(streaming, 50), "p99_writes_ms": pct(streaming, 99),
                "writes_per_s": writer.written / writer.seconds, "write_error": writer.error,
                "searches_steady": len(steady), "searches_writes": len(streaming)}
        row["p99_ratio"] = row["p99_writes_ms"] / row["p99_steady_ms"]
        log.info("%s: %s", name, row)
    finally:
        engine.close(drop=bool(args.milvus_uri))
    return row


def make_data(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    centres = make_centres(args.centres, args.d, args.seed)
    xb = draw(centres, args.n, args.sigma, args.seed + 1)
    xq_tune = draw(centres, args.nq_tune, args.sigma, args.seed + 2)
    xq_eval = draw(centres, args.nq_eval, args.sigma, args.seed + 3)
    n_write = int(args.write_rate * args.window_s * 2) + args.write_batch  # more than a window can take
    xw = draw(centres, n_write, args.sigma, args.seed + 4)
    gt_tune = exact_knn(xq_tune, xb, args.k)[1]
    gt_eval = exact_knn(xq_eval, xb, args.k)[1]
    log.info("data and ground truth in %.1f s", time.perf_counter() - t0)
    return {"xb": xb, "ids": [f"i{r:08d}" for r in range(args.n)], "xq_tune": xq_tune, "xq_eval": xq_eval,
            "xw": xw, "gt_tune": gt_tune, "gt_eval": gt_eval}


def report(rows: list[dict], args: argparse.Namespace, argv: list[str]) -> str:
    head = (f"`.venv/bin/python bench/milvus_bench.py {' '.join(argv)}`".replace(" `", "`") + "\n\n"
            f"{args.n:,} x {args.d}, {args.centres:,} centres (sigma {args.sigma}), recall@{args.k} target "
            f"{args.target_recall}, {args.nq_tune} tuning + {args.nq_eval} eval queries, batches of {args.batch}; "
            f"latency windows {args.window_s:g} s, writes {args.write_rate:g} items/s in batches of "
            f"{args.write_batch}.\n\n")
    lines = ["| engine | build s | tuned | recall@10 | QPS batched | QPS 1 per call | p50 / p99 ms steady | "
             "p50 / p99 ms while writing | p99 ratio | writes/s done |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        build = f"{r['build_s']:.1f}" + (f" ({r['insert_s']:.1f} insert + {r['flush_index_s']:.1f} flush/index + "
                                         f"{r['settle_s']:.1f} background compaction/index)" if "insert_s" in r else "")
        tuned = r["params"] + (f" (engine default: recall {r['engine_default_recall']:.3f})"
                               if "engine_default_recall" in r else "")
        recall = f"{r['recall']:.4f}" + (" (below target)" if r["recall"] < args.target_recall else "")
        lines.append(f"| {r['engine']} | {build} | {tuned} | {recall} | {r['qps_batched']:,.0f} | "
                     f"{r['qps_single']:,.0f} | {r['p50_steady_ms']:.2f} / {r['p99_steady_ms']:.2f} | "
                     f"{r['p50_writes_ms']:.2f} / {r['p99_writes_ms']:.2f} | {r['p99_ratio']:.2f} | "
                     f"{r['writes_per_s']:,.0f}{' (' + r['write_error'] + ')' if r['write_error'] else ''} |")
    return head + "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--centres", type=int, default=10_000)
    p.add_argument("--sigma", type=float, default=0.75, help="noise norm around a centre (search_bench's)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--nq-tune", type=int, default=300, help="held-out tuning queries (IndexSettings.tune_queries)")
    p.add_argument("--nq-eval", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64, help="queries per batched call (coalesce_max_batch)")
    p.add_argument("--window-s", type=float, default=20.0, help="each latency window (steady, while writing)")
    p.add_argument("--write-rate", type=float, default=500.0, help="streamed upserts, items/s")
    p.add_argument("--write-batch", type=int, default=50)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--flat-below", type=int, default=IndexSettings().flat_below, help="Milvus: FLAT below this")
    p.add_argument("--milvus-uri", default="", help="a Milvus server instead of a Lite file in --workdir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir, removed after)")
    p.add_argument("--report", default=None, help="write the markdown table here")
    p.add_argument("--json", default=None, help="write the raw rows here")
    args = p.parse_args(argv)
    unknown = set(args.engines.split(",")) - set(ENGINES)
    if unknown:
        p.error(f"unknown engines {sorted(unknown)}: choose from {', '.join(ENGINES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)  # Milvus Lite refusing pymilvus's AllocTimestamp probe
    work = Path(args.workdir or tempfile.mkdtemp(prefix="milvus_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = make_data(args)
        rows = []
        for name in args.engines.split(","):
            rows.append(run_engine(name, data, args, work))
            if args.json:  # after each engine: a later failure keeps what was measured
                Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = report(rows, args, argv)
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
