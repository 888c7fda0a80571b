"""Search one `IndexView`: main + delta merged, tombstones/filters/min_score applied by over-fetching.

A row is final when k hits passed, or when no unfetched candidate could still rank: every source
is exhausted, or the best score an unfetched candidate could have (the last score fetched from a
source that has more) is below min_score. Otherwise the rows still short are searched again, as one
batch, with a larger fetch. Results are exact with respect to what main returns: the merge never
drops a candidate that main or delta would rank above an accepted hit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import faiss
import numpy as np

from service.index.state import IndexView

GPU_MAX_K = 2048  # faiss GPU k-selection limit
_MISSING = object()


class Hit(NamedTuple):
    """One result: the item id, its inner-product score, its metadata (do not mutate)."""

    id: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Query:
    """Per-query options: k results, metadata equality filter, minimum score (inclusive)."""

    k: int = 10
    filter: Mapping[str, Any] | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ValueError(f"k must be a positive int, got {self.k!r}")
        if self.filter is not None and not isinstance(self.filter, Mapping):
            raise ValueError(f"filter must be a mapping of metadata key → value, got {type(self.filter).__name__}")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ValueError(f"min_score must be finite, got {self.min_score!r}")


@dataclass(frozen=True, slots=True)
class SearchResult:
    """FAISS-style arrays plus hits: D (nq, k) scores padded with -inf, I (nq, k) ids padded
    with None, hits[q] the (≤ k) hits of query q."""

    D: np.ndarray
    I: np.ndarray  # noqa: E741 - FAISS's name
    hits: list[list[Hit]] = field(repr=False)

    @classmethod
    def from_hits(cls, hits: list[list[Hit]], k: int) -> SearchResult:
        D = np.full((len(hits), k), -np.inf, dtype=np.float32)
        I = np.full((len(hits), k), None, dtype=object)  # noqa: E741
        for q, row in enumerate(hits):
            for j, hit in enumerate(row):
                D[q, j], I[q, j] = hit.score, hit.id
        return cls(D, I, hits)


def matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    """Metadata equality filter: every key present with an equal value."""
    return wanted is None or all(metadata.get(key, _MISSING) == value for key, value in wanted.items())


def first_fetch(view: IndexView, queries: Sequence[Query]) -> int:
    """How many candidates to ask each source for first: k, more when tombstones or filters
    will drop some (scaled by the dead fraction, doubled under a filter)."""
    k = max(q.k for q in queries)
    if view.n_dead == 0 and all(q.filter is None for q in queries):
        return k
    live_fraction = max(view.n_live / max(view.n_labels, 1), 0.05)
    factor = (2.0 if any(q.filter for q in queries) else 1.0) / live_fraction
    return max(k + 1, math.ceil(k * factor))


def _search_main(
    view: IndexView, xq: np.ndarray, k: int, on_call: Callable[[], None]
) -> tuple[np.ndarray, np.ndarray]:
    if k == 0 or view.main is None:
        return np.zeros((len(xq), 0), np.float32), np.zeros((len(xq), 0), np.int64)
    on_call()
    return view.main.search(xq, k)


def _search_delta(
    view: IndexView, xq: np.ndarray, k: int, on_call: Callable[[], None]
) -> tuple[np.ndarray, np.ndarray]:
    if k == 0:
        return np.zeros((len(xq), 0), np.float32), np.zeros((len(xq), 0), np.int64)
    on_call()
    D, rows = faiss.knn(xq, view.delta_xb[: view.n_delta], k, metric=faiss.METRIC_INNER_PRODUCT)
    return D, view.delta_labels[rows]


def _collect_row(
    view: IndexView, D: np.ndarray, L: np.ndarray, bound: float, query: Query
) -> tuple[list[Hit], bool]:
    """Hits of one row from merged candidates; `bound` is the best score an unfetched candidate
    could have (-inf when none). Returns (hits, final)."""
    if query.min_score is not None and bound < query.min_score:
        bound = -math.inf  # nothing unfetched could pass min_score anyway
    hits: list[Hit] = []
    seen: set[str] = set()
    for j in np.argsort(-D, kind="stable"):
        score, label = float(D[j]), int(L[j])
        if query.min_score is not None and score < query.min_score:
            return hits, True
        if score < bound:
            return hits, False  # an unfetched candidate could rank here
        if label < 0 or not view.alive[label]:
            continue
        item_id = view.ids[label]
        metadata = view.metadata[label]
        if item_id in seen or not matches(metadata, query.filter):
            continue  # `seen`: a write in flight may briefly show two live copies
        seen.add(item_id)
        hits.append(Hit(item_id, score, metadata))
        if len(hits) == query.k:
            return hits, True
    return hits, bound == -math.inf


def search_view(
    view: IndexView,
    xq: np.ndarray,
    queries: Sequence[Query],
    *,
    on_faiss_call: Callable[[], None] = lambda: None,
    max_main_k: int | None = None,
) -> list[list[Hit]]:
    """Top hits for each row of xq ((nq, d) float32, normalised) under its own Query."""
    if len(queries) != len(xq):
        raise ValueError(f"got {len(xq)} query vectors but {len(queries)} query options")
    results: list[list[Hit]] = [[] for _ in queries]
    if len(xq) == 0 or view.main_ntotal + view.n_delta == 0:
        return results
    main_cap = view.main_ntotal if max_main_k is None else min(view.main_ntotal, max_main_k)
    pending = np.arange(len(xq))
    fetch = first_fetch(view, queries)
    while pending.size:
        sub = xq if pending.size == len(xq) else xq[pending]
        k_main, k_delta = min(fetch, main_cap), min(fetch, view.n_delta)
        Dm, Lm = _search_main(view, sub, k_main, on_faiss_call)
        Dd, Ld = _search_delta(view, sub, k_delta, on_faiss_call)
        short = []
        for row, q in enumerate(pending.tolist()):
            main_more = 0 < k_main < main_cap and Lm[row, -1] >= 0  # -1: an IVF ran dry
            delta_more = 0 < k_delta < view.n_delta
            bound = max(float(Dm[row, -1]) if main_more else -math.inf,
                        float(Dd[row, -1]) if delta_more else -math.inf)
            D = np.concatenate([Dm[row], Dd[row]])
            L = np.concatenate([Lm[row], Ld[row]])
            hits, final = _collect_row(view, D, L, bound, queries[q])
            results[q] = hits
            if not final:
                short.append(q)
        pending = np.asarray(short, dtype=np.int64)
        fetch *= 4
    return results
