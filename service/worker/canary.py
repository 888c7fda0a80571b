"""Recall canary: re-run a few sampled live queries exactly and compare with what the live index returns.

The gateway hands every searched (prepared) query vector to `observe`; a reservoir keeps a uniform
sample of them. Each round, `measure` searches `per_round` of them twice over the same published view
of the index — once as served (tuned main + exact delta + tombstones), once with main searched
exhaustively — and reports the mean recall@k of the first against the second: a degrading index (a
drifting gallery under an old IVF training, a bad operating point) shows up as a falling gauge.

Exhaustive search of main without a second copy of the vectors: IVF-Flat with nprobe = nlist, HNSW and
IVF-PQ with re-ranking through their flat storage / re-ranking index, Flat as is. Other types (IVF-PQ
without re-ranking) keep no exact vectors: the canary reports None for them.

A Milvus collection is measured the same way against `milvus_tune.canary_truth`: exact (a scan of the
collection) up to `max_exact_items`, above that a far wider HNSW search; `exact` says which the last round had.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from service.index import Hit, Query, VectorIndex
from service.index.exact import ExactMain, set_faiss_threads
from service.index.milvus_tune import canary_truth, recall_of
from service.index.search import search_view

log = logging.getLogger(__name__)


class RecallCanary:
    """Reservoir of live queries + periodic exact re-runs; `recall` is the last round's mean recall@k."""

    def __init__(self, *, k: int = 10, per_round: int = 16, reservoir: int = 256, seed: int = 0,
                 on_result: Callable[[float], None] | None = None, max_exact_items: int = 10_000):
        if k <= 0 or per_round <= 0 or reservoir <= 0:
            raise ValueError("k, per_round and reservoir must be positive")
        self.k = k
        self.per_round = per_round
        self.on_result = on_result
        self.recall: float | None = None
        self.exact: bool | None = None  # whether the last round compared with exact search
        self.max_exact_items = max_exact_items
        self.last_run_at: float | None = None
        self.rounds = 0
        self._reservoir = reservoir
        self._rows: list[np.ndarray] = []
        self._seen = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def observe(self, xq: np.ndarray) -> None:
        """Offer searched query vectors ((n, d) or (d,), as prepared for the index) to the reservoir."""
        rows = np.atleast_2d(np.asarray(xq, dtype=np.float32))
        with self._lock:
            for row in rows:
                self._seen += 1
                if len(self._rows) < self._reservoir:
                    self._rows.append(row.copy())
                else:
                    slot = int(self._rng.integers(0, self._seen))
                    if slot < self._reservoir:
                        self._rows[slot] = row.copy()

    def sample(self) -> np.ndarray | None:
        """Up to `per_round` observed queries, or None before any."""
        with self._lock:
            if not self._rows:
                return None
            picks = self._rng.choice(len(self._rows), size=min(self.per_round, len(self._rows)), replace=False)
            return np.stack([self._rows[i] for i in picks])

    def measure(self, index: Any) -> float | None:
        """One round (blocking: run it in a thread) on a FAISS `VectorIndex` or a Milvus collection. None when
        there are no queries yet, the index is empty, or its type keeps no exact vectors."""
        xq = self.sample()
        if xq is None or xq.shape[1] != index.dim:
            return None
        pair = self._faiss_round(index, xq) if isinstance(index, VectorIndex) else self._engine_round(index, xq)
        if pair is None or not any(pair[1]):
            return None
        self.recall = recall_of(*pair)
        self.last_run_at = time.time()
        self.rounds += 1
        if self.on_result is not None:
            self.on_result(self.recall)
        log.info("recall canary: recall@%d %.4f on %d live queries (%s)", self.k, self.recall, len(xq),
                 "exact" if self.exact else "vs a wider search")
        return self.recall

    def _faiss_round(self, index: VectorIndex, xq: np.ndarray) -> tuple[list[list[Hit]], list[list[Hit]]] | None:
        """(served, exact) hits over one published view of the index."""
        view = index.view
        if view.main_ntotal + view.n_delta == 0:
            return None
        exact_view = view
        if view.main is not None:
            exact_main = ExactMain(view.main)
            if not exact_main.supported:
                return None
            exact_view = replace(view, main=exact_main)
        set_faiss_threads(1)  # this thread only: the searcher keeps its core
        queries = [Query(self.k)] * len(xq)
        self.exact = True
        return search_view(view, xq, queries), search_view(exact_view, xq, queries)

    def _engine_round(self, index: Any, xq: np.ndarray) -> tuple[list[list[Hit]], list[list[Hit]]] | None:
        """(served, truth) hits of a Milvus collection (truth: exact up to `max_exact_items`; an empty collection
        gives no truth, and `measure` reports None)."""
        served = index.search_prepared(xq, [Query(self.k)] * len(xq))
        truth = canary_truth(index, xq, self.k, self.max_exact_items)
        self.exact = truth.exact
        return served, truth.hits
