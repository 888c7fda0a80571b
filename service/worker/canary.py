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

import faiss
import numpy as np

from service.index import Query, VectorIndex
from service.index.search import search_view

log = logging.getLogger(__name__)


class ExactMain:
    """Duck-typed stand-in for a main index whose `search` is exhaustive (see the module docstring)."""

    def __init__(self, main: faiss.Index):
        self.main = main
        self.ntotal = main.ntotal
        index = faiss.downcast_index(main)
        self.id_map: np.ndarray | None = None
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
            self.id_map = faiss.vector_to_array(index.id_map)
            index = faiss.downcast_index(index.index)
        self.inner = index

    def flat(self) -> faiss.Index | None:
        """The flat index holding exact vectors in add order, when the inner index has one."""
        if isinstance(self.inner, faiss.IndexHNSW):
            return faiss.downcast_index(self.inner.storage)
        if isinstance(self.inner, faiss.IndexRefine):
            return faiss.downcast_index(self.inner.refine_index)
        return None

    @property
    def supported(self) -> bool:
        return (isinstance(self.inner, faiss.IndexFlat | faiss.IndexIVFFlat) or
                isinstance(self.flat(), faiss.IndexFlat))

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.inner, faiss.IndexFlat):
            return self.main.search(xq, k)
        if isinstance(self.inner, faiss.IndexIVFFlat):
            return self.main.search(xq, k, params=faiss.SearchParametersIVF(nprobe=self.inner.nlist))
        flat = self.flat()
        if flat is None:
            raise TypeError(f"no exact vectors in {type(self.inner).__name__}")
        D, rows = flat.search(xq, k)
        if self.id_map is None:
            return D, rows
        return D, np.where(rows >= 0, self.id_map[np.maximum(rows, 0)], -1)


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
        faiss.omp_set_num_threads(1)  # this thread only: the searcher keeps its core
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
