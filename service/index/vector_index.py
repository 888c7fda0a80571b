"""`VectorIndex`: the per-task index the gateway writes to and searches.

main (built by `build_index`, read-only while live) + delta (exact, every write since main was
built) + tombstones (labels deleted or overwritten). Upsert = add the new copy to delta, publish,
then tombstone the old copy; delete = tombstone. Searches read the published `IndexView` without
locks; writes hold a small lock; a rebuild builds a new generation beside the live one and swaps
it in with one reference assignment, replaying the writes that raced with it.

Metadata is kept per label inside the index, so a filter is plain data (a dict compared by
equality): it can come straight from an HTTP body, is evaluated without a store round trip, and
travels in the snapshot with the vectors it describes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from service.index.build import build_main, is_gpu_index, set_search_params
from service.index.search import GPU_MAX_K, Hit, Query, SearchResult, search_view
from service.index.state import Generation, IndexView
from service.index.vectors import ChangeLogWrites, check_model_version, prepare

if TYPE_CHECKING:
    import faiss

    from service.store.records import Item

log = logging.getLogger(__name__)


@dataclass
class IndexStats:
    """Counters for tests and metrics: FAISS calls (main + delta searches), search batches, queries."""

    faiss_calls: int = 0
    batches: int = 0
    queries: int = 0


@dataclass(frozen=True, slots=True)
class _JournalEntry:
    """A write made while a rebuild is running, replayed into the new generation."""

    op: Literal["upsert", "delete"]
    ids: list[str]
    xb: np.ndarray | None
    metadata: list[dict[str, Any]] | None
    offset: int | None


def _as_id_list(ids: Sequence[str] | str) -> list[str]:
    ids = [ids] if isinstance(ids, str) else list(ids)
    for item_id in ids:
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"ids must be non-empty strings, got {item_id!r}")
    return ids


def _check_unique(ids: list[str], n: int) -> None:
    if len(ids) != n or len(set(ids)) != len(ids):
        raise ValueError(f"need {n} unique ids for {n} vectors, got {len(ids)} ({len(set(ids))} unique)")


def _check_metadata(metadata: Sequence[Mapping[str, Any]] | None, n: int) -> list[dict[str, Any]]:
    """Metadata per row as fresh dicts ({} for each when None)."""
    if metadata is None:
        return [{} for _ in range(n)]
    if len(metadata) != n:
        raise ValueError(f"got {len(metadata)} metadata entries for {n} vectors")
    for m in metadata:
        if not isinstance(m, Mapping):
            raise ValueError(f"metadata entries must be mappings, got {type(m).__name__}")
    return [dict(m) for m in metadata]


def _dedupe_last(
    ids: list[str], xb: np.ndarray, metadata: list[dict[str, Any]]
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Keep the last occurrence of each id in one batch (a batch is applied in order)."""
    if len(set(ids)) == len(ids):
        return ids, xb, metadata
    last = {item_id: row for row, item_id in enumerate(ids)}
    rows = sorted(last.values())
    return [ids[r] for r in rows], xb[rows], [metadata[r] for r in rows]


class VectorIndex(ChangeLogWrites):
    """Per-task vector index bound to one model version and dimension (see module docstring)."""

    def __init__(self, dim: int, model_version: str, *, factory: str = "Flat", search_params: str = ""):
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if not model_version:
            raise ValueError("model_version must be a non-empty string")
        self.dim = dim
        self.model_version = model_version
        self.factory = factory
        self.search_params = search_params
        self.offset = 0  # the store change-log offset this index includes
        self.built_at: float | None = None
        self.stats = IndexStats()
        self._lock = threading.Lock()  # writers only
        self._stats_lock = threading.Lock()
        self._journal: list[_JournalEntry] | None = None
        self._gen = Generation(dim)
        self._view: IndexView = self._gen.view()

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        xb: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        model_version: str,
        factory: str = "Flat",
        search_params: str = "",
        offset: int = 0,
        train_sample: int | None = None,
        use_gpu: bool | None = None,
    ) -> VectorIndex:
        """An index whose main holds these vectors (labels 0..n-1) and whose delta is empty."""
        index = cls(int(np.shape(xb)[-1]), model_version, factory=factory, search_params=search_params)
        ids = _as_id_list(ids)
        xb = prepare(xb, index.dim)
        _check_unique(ids, len(xb))
        meta = _check_metadata(metadata, len(ids))
        main = None
        if ids:
            main = build_main(xb, factory, search_params=search_params, train_sample=train_sample, use_gpu=use_gpu)
        return index._adopt_main(ids, main, meta, offset)

    @classmethod
    def from_main(cls, dim: int, ids: Sequence[str], main: faiss.Index | None,
                  metadata: Sequence[Mapping[str, Any]] | None = None, *, model_version: str, factory: str,
                  search_params: str = "", offset: int = 0) -> VectorIndex:
        """An index over a main built elsewhere (e.g. `build_main` in a background thread): its labels
        0..n-1 are the positions of `ids`. `main` may be None when there are no ids."""
        index = cls(dim, model_version, factory=factory, search_params=search_params)
        ids = _as_id_list(ids)
        _check_unique(ids, 0 if main is None else int(main.ntotal))
        return index._adopt_main(ids, main, _check_metadata(metadata, len(ids)), offset)

    def _adopt_main(self, ids: list[str], main: faiss.Index | None, meta: list[dict[str, Any]],
                    offset: int) -> VectorIndex:
        if ids and main is not None:
            self._gen = Generation.with_main(self.dim, main, ids, meta)
            self._view = self._gen.view()
        self.offset = offset
        self.built_at = time.time()
        return self

    @classmethod
    def from_items(cls, items: Sequence[Item], *, model_version: str, dim: int | None = None,
                   **options: Any) -> VectorIndex:
        """`build` from store records (all must carry `model_version`); `dim` needed when empty."""
        for item in items:
            check_model_version(item.model_version, model_version, what=f"item {item.id!r}")
        if not items and dim is None:
            raise ValueError("from_items on no items needs dim")
        xb = np.stack([item.vector for item in items]) if items else np.zeros((0, dim), np.float32)
        return cls.build([i.id for i in items], xb, [i.metadata for i in items], model_version=model_version,
                         **options)

    # -- introspection -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._view.n_live

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._gen.label_of(item_id) is not None

    @property
    def delta_size(self) -> int:
        """Vectors written since main was built (live or not): rebuild when this grows large."""
        return self._view.n_delta

    @property
    def tombstones(self) -> int:
        """Dead copies still inside main or delta."""
        return self._view.n_dead

    @property
    def main_size(self) -> int:
        return self._view.main_ntotal

    @property
    def main(self) -> faiss.Index | None:
        """The live main FAISS index (None before a build). Read-only for callers: change its operating
        point with `set_search_params`; labels are row positions of the build (0..n-1)."""
        return self._view.main

    @property
    def view(self) -> IndexView:
        """The published view searches read (one consistent state; do not mutate)."""
        return self._view

    def metadata_of(self, item_id: str) -> dict[str, Any] | None:
        """The live metadata of an id, or None."""
        gen = self._gen  # one generation for both reads (a rebuild may swap it)
        label = gen.label_of(item_id)
        return None if label is None else gen.metadata[label]

    # -- writes --------------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[str] | str,
        xb: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        *,
        model_version: str,
        offset: int | None = None,
    ) -> None:
        """Insert or overwrite; visible to every search that starts after this returns."""
        check_model_version(model_version, self.model_version)
        ids = _as_id_list(ids)
        xb = prepare(xb, self.dim)
        if len(ids) != len(xb):
            raise ValueError(f"got {len(ids)} ids for {len(xb)} vectors")
        ids, xb, meta = _dedupe_last(ids, xb, _check_metadata(metadata, len(ids)))
        with self._lock:
            self._apply_upsert(self._gen, ids, xb, meta, publish=True)
            self._record(_JournalEntry("upsert", ids, xb, meta, offset))

    def delete(self, ids: Sequence[str] | str, *, offset: int | None = None) -> int:
        """Tombstone ids; return how many were present."""
        ids = _as_id_list(ids)
        with self._lock:
            removed = self._apply_delete(self._gen, ids, publish=True)
            self._record(_JournalEntry("delete", ids, None, None, offset))
        return removed

    def _apply_upsert(self, gen: Generation, ids: list[str], xb: np.ndarray,
                      meta: list[dict[str, Any]], *, publish: bool) -> None:
        superseded = gen.add(ids, xb, meta)
        if publish:
            self._view = gen.view()  # the new copies are visible before the old ones die
        gen.kill(superseded)

    def _apply_delete(self, gen: Generation, ids: list[str], *, publish: bool) -> int:
        labels = gen.remove(ids)
        gen.kill(labels)
        if publish:
            self._view = gen.view()
        return len(labels)

    def _record(self, entry: _JournalEntry) -> None:
        if entry.offset is not None:
            self.offset = max(self.offset, entry.offset)
        if self._journal is not None:
            self._journal.append(entry)

    # -- search --------------------------------------------------------------------------------

    def prepare_queries(self, xq: np.ndarray, model_version: str | None = None) -> np.ndarray:
        """Validate and normalise queries: (nq, d) float32. Raises DimensionError/ModelVersionError."""
        check_model_version(model_version, self.model_version, what="queries")
        return prepare(xq, self.dim, name="xq")

    def search(
        self,
        xq: np.ndarray,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the API's word
        min_score: float | None = None,
        model_version: str | None = None,
    ) -> SearchResult:
        """Top-k live items per query by inner product (cosine), filtered by metadata equality
        and min_score; over-fetches until k pass or the index is exhausted."""
        query = Query(k, filter, min_score)
        xq = self.prepare_queries(xq, model_version)
        return SearchResult.from_hits(self.search_prepared(xq, [query] * len(xq)), k)

    def search_prepared(self, xq: np.ndarray, queries: Sequence[Query]) -> list[list[Hit]]:
        """Search already-prepared queries, each row with its own options (the coalescer's entry)."""
        view = self._view  # one read: the whole search sees one consistent view
        max_k = GPU_MAX_K if view.main is not None and is_gpu_index(view.main) else None
        hits = search_view(view, xq, queries, on_faiss_call=self._count_call, max_main_k=max_k)
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.queries += len(xq)
        return hits

    def _count_call(self) -> None:
        with self._stats_lock:
            self.stats.faiss_calls += 1

    # -- rebuilds ------------------------------------------------------------------------------

    def begin_rebuild(self) -> None:
        """Start journaling writes. Call before reading the source's offset for the rebuild."""
        with self._lock:
            if self._journal is not None:
                raise RuntimeError("a rebuild is already in progress on this index")
            self._journal = []

    def abort_rebuild(self) -> None:
        """Stop journaling (the rebuild failed)."""
        with self._lock:
            self._journal = None

    def finish_rebuild(self, fresh: VectorIndex) -> int:
        """Adopt `fresh`'s generation (built beside from a source at `fresh.offset`): replay the
        journaled writes after that offset into it, then swap. Returns the number replayed.
        `fresh` must not be used afterwards."""
        if (fresh.dim, fresh.model_version) != (self.dim, self.model_version):
            raise ValueError(
                f"rebuild produced dim {fresh.dim} / version {fresh.model_version!r}, the index is "
                f"dim {self.dim} / version {self.model_version!r}: swap whole indexes for a model upgrade")
        with self._lock:
            if self._journal is None:
                raise RuntimeError("finish_rebuild without begin_rebuild")
            replay = [e for e in self._journal if e.offset is None or e.offset > fresh.offset]
            gen = fresh._gen
            for entry in replay:
                if entry.op == "upsert":
                    assert entry.xb is not None and entry.metadata is not None
                    self._apply_upsert(gen, entry.ids, entry.xb, entry.metadata, publish=False)
                else:
                    self._apply_delete(gen, entry.ids, publish=False)
            self._gen = gen
            self._view = gen.view()  # the swap: one reference assignment for readers
            self._journal = None
            self.offset = max(self.offset, fresh.offset)
            self.factory, self.search_params, self.built_at = fresh.factory, fresh.search_params, fresh.built_at
        log.info("swapped in rebuilt index: %d main + %d delta, %d journaled writes replayed",
                 self.main_size, self.delta_size, len(replay))
        return len(replay)

    def set_search_params(self, params: str) -> None:
        """Change the operating point of the live main index (e.g. "nprobe=16")."""
        view = self._view
        if view.main is not None:
            set_search_params(view.main, params)
        self.search_params = params
