"""Recall canary: re-run a few sampled live queries exactly and compare with what the live index returns.

The gateway hands every searched (prepared) query vector to `observe`; a reservoir keeps a uniform
sample of them. Each round, `measure` searches `per_round` of them twice over the same published view
of the index — once as served (tuned main + exact delta + tombstones), once with main searched
exhaustively — and reports the mean recall@k of the first against the second: a degrading index (a
drifting gallery under an old IVF training, a bad operating point) shows up as a falling gauge.

Exhaustive search of main without a second copy of the vectors: IVF-Flat with nprobe = nlist, HNSW and
IVF-PQ with re-ranking through their flat storage / re-ranking index, Flat as is. Other types (IVF-PQ
without re-ranking) keep no exact vectors: the canary reports None for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from service.index import Query, VectorIndex
from service.index.exact import ExactMain, set_faiss_threads
from service.index.search import search_view

log = logging.getLogger(__name__)


class RecallCanary:
    """Reservoir of live queries + periodic exact re-runs; `recall` is the last round's mean recall@k."""

    def __init__(self, *, k: int = 10, per_round: int = 16, reservoir: int = 256, seed: int = 0,
                 on_result: Callable[[float], None] | None = None):
        if k <= 0 or per_round <= 0 or reservoir <= 0:
            raise ValueError("k, per_round and reservoir must be positive")
        self.k = k
        self.per_round = per_round
        self.on_result = on_result
        self.recall: float | None = None
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

    def measure(self, index: VectorIndex) -> float | None:
        """One round (blocking: run it in a thread). None when there are no queries yet, the index is empty,
        or its type keeps no exact vectors."""
        xq = self.sample()
        view = index.view
        if xq is None or xq.shape[1] != index.dim or view.main_ntotal + view.n_delta == 0:
            return None
        exact_view = view
        if view.main is not None:
            exact_main = ExactMain(view.main)
            if not exact_main.supported:
                return None
            exact_view = replace(view, main=exact_main)
        set_faiss_threads(1)  # this thread only: the searcher keeps its core
        queries = [Query(self.k)] * len(xq)
        served = search_view(view, xq, queries)
        truth = search_view(exact_view, xq, queries)
        recalls = [len({h.id for h in got} & {h.id for h in want}) / len(want)
                   for got, want in zip(served, truth, strict=True) if want]
        if not recalls:
            return None
        self.recall = float(np.mean(recalls))
        self.last_run_at = time.time()
        self.rounds += 1
        if self.on_result is not None:
            self.on_result(self.recall)
        log.info("recall canary: recall@%d %.4f on %d live queries", self.k, self.recall, len(recalls))
        return self.recall
