"""The Milvus engine's index: one task's vectors for one model version in one Milvus collection.

Rows are (id VARCHAR primary key, vector FLOAT_VECTOR, metadata JSON); the metric is inner product on the
same L2-normalised vectors the FAISS engine holds, so ids and scores agree with it. The search's metadata
filter goes to Milvus as an expression (`milvus_filter`), not fetched wide and filtered here; min_score is
applied to the top k Milvus returns, which is exact because they come sorted by score. An HNSW collection is
searched at its tuned `ef` (`milvus_tune`), FLAT exhaustively.

Consistency is Strong on every call: a search waits until every write acknowledged before it started is
visible, whichever gateway replica or worker process made it. Session consistency would only cover writes
made through the same client (one process), and Bounded/Eventually would let a client miss its own write
after a load balancer sends its next request to another replica.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from service.index.errors import IndexUnavailable
from service.index.milvus_filter import filter_expression, string_literal
from service.index.search import Hit, Query, SearchResult
from service.index.vector_index import _as_id_list, _check_metadata, _dedupe_last
from service.index.vectors import ChangeLogWrites, check_model_version, prepare

if TYPE_CHECKING:
    from pymilvus import MilvusClient


log = logging.getLogger(__name__)
T = TypeVar("T")
CONSISTENCY = "Strong"
MAX_K = 16_384  # Milvus's topk limit
ID_MAX_LENGTH = 1024
_UNAVAILABLE_HINTS = ("unavailable", "deadline", "fail connecting", "connection refused", "timed out", "closed")


def is_unavailable(exc: BaseException) -> bool:
    """Milvus down, unreachable, slow or rate-limiting (→ 503), as opposed to a request Milvus refused."""
    import grpc
    from pymilvus.exceptions import (
        ConnectError,
        ConnectionNotExistException,
        MilvusException,
        MilvusUnavailableException,
    )

    if isinstance(exc, (grpc.RpcError, ConnectError, ConnectionNotExistException, MilvusUnavailableException,
                        TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, MilvusException):
        return exc.code in (2, 8) or any(h in str(exc.message).lower() for h in _UNAVAILABLE_HINTS)
    return False


def guarded(call: Callable[[], T], what: str, retry_after_s: float) -> T:
    """Run one Milvus call; an outage becomes `IndexUnavailable` (503 + Retry-After), anything else propagates."""
    try:
        return call()
    except Exception as exc:
        if is_unavailable(exc):
            raise IndexUnavailable(f"the Milvus index is unavailable ({what}): {exc}",
                                   retry_after_s=retry_after_s) from exc
        raise


class MilvusIndex(ChangeLogWrites):
    """`IndexEngine` over one Milvus collection (see module docstring)."""

    def __init__(self, client: MilvusClient, collection: str, dim: int, model_version: str, *, offset: int = 0,
                 retry_after_s: float = 2.0, index_type: str = "FLAT", search_ef: int | None = None,
                 tuned_recall: float | None = None, tuned_count: int | None = None):
        self.client = client
        self.collection = collection
        self.dim = dim
        self.model_version = model_version
        self.offset = offset
        self.retry_after_s = retry_after_s
        self.index_type = index_type  # FLAT, HNSW or GPU_CAGRA (chosen by size when the collection was made)
        self.search_ef = search_ef  # HNSW search effort, tuned to the recall target (None: Milvus's default)
        self.tuned_recall = tuned_recall  # recall@10 at that ef on held-out queries when it was tuned
        self.tuned_count = tuned_count  # how many items the collection held then

    def _call(self, what: str, call: Callable[[], T]) -> T:
        return guarded(call, f"{what} on {self.collection}", self.retry_after_s)

    # What the index routes and metrics report of a FAISS index; Milvus keeps no delta or tombstones of ours.
    delta_size = 0
    tombstones = 0
    built_at: float | None = None

    @property
    def main_size(self) -> int:
        return len(self)

    @property
    def factory(self) -> str:
        return f"milvus:{self.index_type}"

    @property
    def search_params(self) -> str:
        return "" if self.search_ef is None else f"ef={self.search_ef}"

    # -- introspection -------------------------------------------------------------------------

    def __len__(self) -> int:
        rows = self._call("count", lambda: self.client.query(
            self.collection, filter="", output_fields=["count(*)"], consistency_level=CONSISTENCY))
        return int(rows[0]["count(*)"])

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and bool(self._rows([item_id], ["id"]))

    def metadata_of(self, item_id: str) -> dict[str, Any] | None:
        rows = self._rows([item_id], ["id", "metadata"])
        return dict(rows[0]["metadata"]) if rows else None

    def vectors_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these ids (absent ids left out)."""
        if not ids:
            return {}
        return {r["id"]: np.asarray(r["vector"], dtype=np.float32) for r in self._rows(list(ids), ["id", "vector"])}

    def iter_vectors(self, batch: int = 4096) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every (ids, vectors) of the collection, a batch at a time (a full read: for tuning and the canary)."""
        pages = self._call("scan", lambda: self.client.query_iterator(
            self.collection, batch_size=batch, filter="", output_fields=["id", "vector"],
            consistency_level=CONSISTENCY))
        try:
            while rows := self._call("scan", pages.next):
                yield [r["id"] for r in rows], np.asarray([r["vector"] for r in rows], dtype=np.float32)
        finally:
            pages.close()

    def _rows(self, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        expr = f"id in [{', '.join(string_literal(i) for i in ids)}]"
        return self._call("query", lambda: self.client.query(
            self.collection, filter=expr, output_fields=fields, consistency_level=CONSISTENCY))

    # -- writes --------------------------------------------------------------------------------

    def upsert(self, ids: Sequence[str] | str, xb: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None = None,
               *, model_version: str, offset: int | None = None) -> None:
        """Insert or overwrite; visible to every search that starts after this returns (Strong)."""
        check_model_version(model_version, self.model_version)
        ids = _check_ids(_as_id_list(ids))
        xb = prepare(xb, self.dim)
        if len(ids) != len(xb):
            raise ValueError(f"got {len(ids)} ids for {len(xb)} vectors")
        ids, xb, meta = _dedupe_last(ids, xb, _check_metadata(metadata, len(ids)))
        rows = [{"id": i, "vector": v.tolist(), "metadata": m} for i, v, m in zip(ids, xb, meta, strict=True)]
        self._call("upsert", lambda: self.client.upsert(self.collection, rows))
        self._advance(offset)

    def delete(self, ids: Sequence[str] | str, *, offset: int | None = None) -> int:
        """Delete ids; return how many were present."""
        ids = _check_ids(_as_id_list(ids))
        present = [r["id"] for r in self._rows(ids, ["id"])]
        if present:
            self._call("delete", lambda: self.client.delete(self.collection, ids=present))
        self._advance(offset)
        return len(present)

    def clear(self) -> None:
        """Delete every row (a refill from the store follows)."""
        self._call("clear", lambda: self.client.delete(self.collection, filter='id != ""'))

    def _advance(self, offset: int | None) -> None:
        if offset is not None:
            self.offset = max(self.offset, offset)

    # -- search --------------------------------------------------------------------------------

    def prepare_queries(self, xq: np.ndarray, model_version: str | None = None) -> np.ndarray:
        check_model_version(model_version, self.model_version, what="queries")
        return prepare(xq, self.dim, name="xq")

    def search(self, xq: np.ndarray, k: int = 10, *, filter: Mapping[str, Any] | None = None,  # noqa: A002
               min_score: float | None = None, model_version: str | None = None) -> SearchResult:
        """Top-k items per query by inner product, filtered in Milvus by metadata equality, then min_score."""
        query = Query(k, filter, min_score)
        xq = self.prepare_queries(xq, model_version)
        return SearchResult.from_hits(self.search_prepared(xq, [query] * len(xq)), k)

    def search_params_for(self, k: int, ef: int | None = None) -> dict[str, Any]:
        """Milvus search parameters: inner product, and for HNSW the ef (at least k, which Milvus requires)."""
        ef = ef or self.search_ef
        if self.index_type != "HNSW" or ef is None:
            return {"metric_type": "IP"}
        return {"metric_type": "IP", "params": {"ef": max(ef, k)}}

    def search_prepared(self, xq: np.ndarray, queries: Sequence[Query], *, ef: int | None = None) -> list[list[Hit]]:
        """Prepared queries, each with its own options: one Milvus call per (k, filter) group. `ef` overrides
        the tuned search effort (tuning and the canary's reference search)."""
        groups: dict[tuple[int, str], list[int]] = {}
        for row, query in enumerate(queries):
            if query.k > MAX_K:
                raise ValueError(f"k must be at most {MAX_K} with the milvus engine, got {query.k}")
            groups.setdefault((query.k, filter_expression(query.filter)), []).append(row)
        hits: list[list[Hit]] = [[] for _ in queries]
        for (k, expr), rows in groups.items():
            found = self._call("search", lambda rows=rows, k=k, expr=expr: self.client.search(
                self.collection, data=[xq[r].tolist() for r in rows], limit=k, filter=expr,
                output_fields=["metadata"], search_params=self.search_params_for(k, ef),
                consistency_level=CONSISTENCY))
            for row, answer in zip(rows, found, strict=True):
                floor = queries[row].min_score
                hits[row] = [Hit(h["id"], float(h["distance"]), dict(h["entity"]["metadata"] or {}))
                             for h in answer if floor is None or h["distance"] >= floor]
        return hits


def _check_ids(ids: list[str]) -> list[str]:
    for item_id in ids:
        if len(item_id.encode()) > ID_MAX_LENGTH:
            raise ValueError(f"ids are at most {ID_MAX_LENGTH} bytes with the milvus engine, got {item_id[:40]!r}...")
    return ids
