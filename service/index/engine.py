"""The index-engine seam: what the gallery, the rebuild worker and the recall canary need of an index.

Two engines sit behind it. `faiss` (default): `VectorIndex`, held in the gateway's memory, snapshotted to
local files (one machine). `milvus`: a collection in a Milvus server, or in an embedded Milvus Lite file,
holding the vectors and metadata outside the gateway (shards and replicas are Milvus's job).

`IndexEngine` is one task's index bound to one model version. `EngineCatalog` opens the live engine of a
task, creates a new one beside it (a model upgrade fills it), promotes it in one step, and persists on
close. Both engines answer the same searches with the same ids, scores, k and min_score: inner product on
L2-normalised vectors (`vectors.prepare`), exact below `index.flat_below` items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from service.index.search import Hit, Query, SearchResult

if TYPE_CHECKING:
    from service.index.milvus_settings import MilvusSettings
    from service.store.records import Change, Item

ENGINES = ("faiss", "milvus")
EngineName = Literal["faiss", "milvus"]


@runtime_checkable
class IndexEngine(Protocol):
    """One task's index for one model version. Writes are visible to every search that starts after they
    return (read-your-writes); `offset` is the store change-log offset the index includes."""

    dim: int
    model_version: str
    offset: int

    def __len__(self) -> int: ...

    def __contains__(self, item_id: object) -> bool: ...

    def metadata_of(self, item_id: str) -> dict[str, Any] | None: ...

    def upsert(self, ids: Sequence[str] | str, xb: np.ndarray, metadata: Sequence[Mapping[str, Any]] | None = None,
               *, model_version: str, offset: int | None = None) -> None: ...

    def delete(self, ids: Sequence[str] | str, *, offset: int | None = None) -> int: ...

    def upsert_items(self, items: Sequence[Item], *, offset: int | None = None) -> None: ...

    def apply_change(self, change: Change) -> None: ...

    def prepare_queries(self, xq: np.ndarray, model_version: str | None = None) -> np.ndarray: ...

    def search(self, xq: np.ndarray, k: int = 10, *, filter: Mapping[str, Any] | None = None,  # noqa: A002
               min_score: float | None = None, model_version: str | None = None) -> SearchResult: ...

    def search_prepared(self, xq: np.ndarray, queries: Sequence[Query]) -> list[list[Hit]]: ...


class EngineCatalog(Protocol):
    """The indexes of every task: which one is live, new ones beside it, the one-step switch."""

    name: EngineName

    def open(self, task: str) -> IndexEngine | None:
        """The task's live index as last persisted (None when the task has none yet); the caller catches it
        up from the store's change log after `offset` (replays are idempotent)."""
        ...

    def create(self, task: str, model_version: str, dim: int) -> IndexEngine:
        """A new empty index for this version beside the live one; not searched until promoted."""
        ...

    def promote(self, task: str, engine: IndexEngine) -> None:
        """Make `engine` the task's live index in one step: an answer never mixes two versions."""
        ...

    def checkpoint(self, task: str) -> None:
        """Persist the live index (and its offset) so that a reopen finds everything written so far."""
        ...

    def close(self) -> None:
        """Checkpoint every live index and release connections."""
        ...


def open_catalog(engine: str, *, data_dir: Any = None, milvus: MilvusSettings | None = None,
                 flat_below: int = 50_000, recall_target: float = 0.95, exact_scan_max_items: int = 10_000
                 ) -> EngineCatalog:
    """The catalog the settings name (`UFO_INDEX__ENGINE`); ValueError naming the setting otherwise."""
    if engine == "faiss":
        from service.index.faiss_engine import FaissCatalog

        if data_dir is None:
            raise ValueError("the faiss engine needs data_dir (UFO_DATA_DIR) for its snapshots")
        return FaissCatalog(data_dir)
    if engine == "milvus":
        from service.index.milvus_catalog import MilvusCatalog
        from service.index.milvus_settings import MilvusSettings

        return MilvusCatalog(milvus or MilvusSettings(), flat_below=flat_below, recall_target=recall_target,
                             exact_scan_max_items=exact_scan_max_items)
    raise ValueError(f"UFO_INDEX__ENGINE={engine!r} is not an index engine: use one of {', '.join(ENGINES)}")
