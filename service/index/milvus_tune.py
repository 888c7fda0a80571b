"""Search effort of a Milvus HNSW collection: `ef` tuned to the recall target on held-out queries, as the FAISS
engine tunes its operating point; and the truth the recall canary compares live queries with.

Exact search over a Milvus collection is a scan: every vector read back through a query iterator and scored
here (Milvus has no exhaustive mode for an HNSW collection). That is slow (Milvus Lite, 128-d: 10k rows ~4 s,
100k rows ~2 min, `bench/milvus_scan.py`), so tuning and the canary scan only collections of at most
`index.exact_scan_max_items` (10k); above that their truth is a search at `REFERENCE_EF`, far past any tuned
ef: near-exact, not exact, and the canary says which (`exact`). Held-out queries come from one page of stored
vectors, never a full read.

The tuned `ef` is kept in the collection's properties (`ufo.ef`), so every replica that opens the collection
searches with it. A query asking for more hits than `ef` is searched with ef = k (Milvus needs ef >= k).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.index.search import Hit, Query
from service.index.tune import OperatingPoint

if TYPE_CHECKING:
    from service.index.milvus_engine import MilvusIndex

log = logging.getLogger(__name__)
EF_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
REFERENCE_EF = 8192  # the canary's reference above the scan limit: far past any tuned ef
RECALL_K = 10
SCAN_BATCH = 4096
SAMPLE_ROWS = 4096  # held-out queries are drawn from the first page of the collection (pk order)


def scan_top_k(index: MilvusIndex, xq: np.ndarray, k: int) -> list[list[Hit]]:
    """Exact top-k by inner product for each query, over every row of the collection (a full read)."""
    best_ids = np.empty((len(xq), 0), dtype=object)
    best_scores = np.empty((len(xq), 0), dtype=np.float32)
    for ids, xb in index.iter_vectors(SCAN_BATCH):
        scores = np.concatenate([best_scores, xq @ xb.T], axis=1)
        pool = np.concatenate([best_ids, np.broadcast_to(np.asarray(ids, dtype=object), (len(xq), len(ids)))],
                              axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_ids = np.take_along_axis(pool, keep, axis=1)
    return [[Hit(str(i), float(s), {}) for i, s in zip(row_ids, row_scores, strict=True)]
            for row_ids, row_scores in zip(best_ids, best_scores, strict=True)]


def sample_vectors(index: MilvusIndex, n: int, seed: int = 7) -> np.ndarray:
    """Up to `n` stored vectors drawn uniformly from the collection's first `SAMPLE_ROWS` (one page, not a scan)."""
    pages = index.iter_vectors(SAMPLE_ROWS)
    try:
        page = next(pages, None)
    finally:
        pages.close()  # (ends the query iterator now, not when the generator is collected)
    if page is None:
        return np.empty((0, index.dim), dtype=np.float32)
    rows = page[1]
    picks = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return rows[np.sort(picks)]


def held_out_queries(index: MilvusIndex, n: int) -> np.ndarray:
    """Queries near the gallery but not in it, as the FAISS engine tunes on: the normalised midpoint of a
    sampled item and its nearest other item (found with the collection's own search)."""
    rows = sample_vectors(index, n)
    if len(rows) == 0:
        return rows
    nearest = index.search_prepared(rows, [Query(2)] * len(rows))
    # the row itself ranks first (a vector scores 1 with itself): its neighbour is the other hit
    others = [next((h.id for h in hits if h.score < 1.0 - 1e-6), None) for hits in nearest]
    vectors = index.vectors_of([i for i in others if i is not None])
    xq = rows.copy()
    for q, other in enumerate(others):
        if other in vectors:
            xq[q] += vectors[other]
    return (xq / np.linalg.norm(xq, axis=1, keepdims=True)).astype(np.float32)


def recall_of(found: list[list[Hit]], truth: list[list[Hit]]) -> float:
    """Mean |found top-k ∩ true top-k| / |true top-k| over the queries that have any truth."""
    recalls = [len({h.id for h in got} & {h.id for h in want}) / len(want)
               for got, want in zip(found, truth, strict=True) if want]
    return float(np.mean(recalls)) if recalls else 1.0


def tune_ef(index: MilvusIndex, target: float, max_exact_items: int, n_queries: int = 100) -> OperatingPoint | None:
    """Set (and return) the smallest ef on `EF_LADDER` whose recall@10 on held-out queries reaches `target`
    against `canary_truth` (the best one, with a warning, when none does). None for a collection that is not
    HNSW or too small."""
    if index.index_type != "HNSW" or len(index) <= RECALL_K:
        return None
    xq = held_out_queries(index, n_queries)
    reference = canary_truth(index, xq, RECALL_K, max_exact_items)
    truth = reference.hits
    queries = [Query(RECALL_K)] * len(xq)
    measured: list[tuple[int, float, float]] = []
    for ef in EF_LADDER:
        started = time.perf_counter()
        found = index.search_prepared(xq, queries, ef=ef)
        measured.append((ef, recall_of(found, truth), len(xq) / max(time.perf_counter() - started, 1e-9)))
        if measured[-1][1] >= target:
            break
    ef, recall, qps = measured[-1] if measured[-1][1] >= target else max(measured, key=lambda m: m[1])
    if recall < target:
        log.warning("%s: no ef reached recall@%d %.3f; using ef=%d (%.4f)", index.collection, RECALL_K, target,
                    ef, recall)
    index.search_ef = ef
    log.info("%s: ef=%d, recall@%d %.4f on %d held-out queries (%s), %.0f QPS", index.collection, ef, RECALL_K,
             recall, len(xq), "vs exact search" if reference.exact else f"vs ef={REFERENCE_EF}", qps)
    return OperatingPoint(f"ef={ef}", recall, qps)


@dataclass(frozen=True, slots=True)
class CanaryTruth:
    """What a canary round compares the served hits with: exact hits, or a wide reference search's."""

    hits: list[list[Hit]]
    exact: bool


def canary_truth(index: MilvusIndex, xq: np.ndarray, k: int, max_exact_items: int) -> CanaryTruth:
    """Exact top-k by scanning while the collection holds at most `max_exact_items`; else a search at
    `REFERENCE_EF` (FLAT collections are exact as served: their own search is the truth)."""
    if index.index_type == "FLAT":
        return CanaryTruth(index.search_prepared(xq, [Query(k)] * len(xq)), exact=True)
    if len(index) <= max_exact_items:
        return CanaryTruth(scan_top_k(index, xq, k), exact=True)
    return CanaryTruth(index.search_prepared(xq, [Query(k)] * len(xq), ef=REFERENCE_EF), exact=False)
