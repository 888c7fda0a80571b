"""Open a task's live index and catch it up with the store: the one way, at gateway start-up and in the tests.

FAISS (`open_faiss`): the usable snapshot with the highest offset — the latest a rebuild job announced, or the
gateway's own (written at shutdown) — caught up from the change log and checked against the store's count;
else an exact index built from the store here (the caller asks for a background rebuild when it is large).
Milvus (`open_milvus`): the collection the task's alias names when it holds this model version, caught up
from the log; else a new collection filled from the store and promoted. The gateway then holds no index
state of its own: a restart, another replica or another worker process opens the same collection.
A store holding records of another model version raises `ModelVersionError` (the task cannot serve).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from service.index import RebuildReport, SnapshotError, VectorIndex, read_sidecar, rebuild_from_store
from service.index.errors import ModelVersionError
from service.index.snapshot import load_snapshot
from service.index.vectors import check_model_version
from service.store.base import ChangeLogTrimmed, GalleryStore
from service.worker.changes import Reembedder, follow_log
from service.worker.queue import JobQueue
from service.worker.records import SnapshotInfo
from service.worker.snapshots import SnapshotStore

if TYPE_CHECKING:
    from service.index.engine import EngineCatalog, IndexEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    """A live index, the announced snapshot it came from (None: built here or the gateway's own), and the
    build from the store when there was one."""

    index: IndexEngine
    snapshot: SnapshotInfo | None = None
    built: RebuildReport | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    path: Path
    offset: int
    info: SnapshotInfo | None  # None: the gateway's own snapshot


async def open_live_index(task: str, store: GalleryStore, queue: JobQueue, *, model_version: str, dim: int,
                          catalog: EngineCatalog | None = None, snapshots: SnapshotStore | None = None,
                          local_snapshot: Path | None = None, reembed: Reembedder | None = None) -> Opened:
    """The task's live index for `model_version`, caught up with `store` (see the module docstring)."""
    if catalog is not None and catalog.name == "milvus":
        return await open_milvus(task, store, catalog, model_version=model_version, dim=dim, reembed=reembed)
    return await open_faiss(task, store, queue, model_version=model_version, dim=dim, snapshots=snapshots,
                            local_snapshot=local_snapshot, reembed=reembed)


async def open_faiss(task: str, store: GalleryStore, queue: JobQueue, *, model_version: str, dim: int,
                     snapshots: SnapshotStore | None = None, local_snapshot: Path | None = None,
                     reembed: Reembedder | None = None) -> Opened:
    store_offset = await store.last_offset()
    for candidate in await snapshot_candidates(task, queue, snapshots, local_snapshot, model_version, dim,
                                               store_offset):
        index = await load_caught_up(task, candidate, store, model_version, reembed)
        if index is not None:
            return Opened(index, candidate.info)
    index = VectorIndex(dim, model_version)
    report = await rebuild_from_store(index, store, factory="Flat")
    return Opened(index, None, report)


async def snapshot_candidates(task: str, queue: JobQueue, snapshots: SnapshotStore | None, local: Path | None,
                              model_version: str, dim: int, store_offset: int) -> list[Candidate]:
    """Snapshots of this model and dimension that the store was not replaced under, highest offset first."""
    found: list[Candidate] = []
    latest = await queue.latest_snapshot(task)
    if latest is not None and latest.model_version == model_version and latest.dim == dim:
        path = snapshots.data_path(latest.task, latest.version) if snapshots is not None else Path(latest.path)
        found.append(Candidate(path, latest.offset, latest))
    if local is not None:
        try:
            sidecar = await asyncio.to_thread(read_sidecar, local)
        except SnapshotError:
            sidecar = {}
        if sidecar.get("model_version") == model_version and sidecar.get("dim") == dim:
            found.append(Candidate(local, int(sidecar.get("offset", 0)), None))
        elif sidecar:
            log.info("%s: snapshot %s is for %s, serving %s: not used", task, local, sidecar.get("model_version"),
                     model_version)
    usable = [c for c in found if c.offset <= store_offset]
    if len(usable) < len(found):
        log.warning("%s: a snapshot is newer than the store (a replaced store?): not used", task)
    return sorted(usable, key=lambda c: c.offset, reverse=True)


async def load_caught_up(task: str, candidate: Candidate, store: GalleryStore, model_version: str,
                         reembed: Reembedder | None) -> VectorIndex | None:
    """The snapshot loaded and caught up from the log, or None (logged) when it cannot be used."""
    try:
        index = await asyncio.to_thread(load_snapshot, candidate.path, model_version=model_version)
        stats = await follow_log(index, store, reembed=reembed)
    except (SnapshotError, ChangeLogTrimmed, ModelVersionError, OSError) as exc:
        log.warning("%s: snapshot %s not usable (%s); trying the next source", task, candidate.path, exc)
        return None
    log.info("%s: caught up %d changes to offset %d", task, stats.applied, index.offset)
    if stats.skipped == 0 and len(index) != await store.count():
        log.warning("%s: snapshot %s disagrees with the store after catching up: not used", task, candidate.path)
        return None
    return index


async def open_milvus(task: str, store: GalleryStore, catalog: EngineCatalog, *, model_version: str, dim: int,
                      reembed: Reembedder | None = None) -> Opened:
    live = await asyncio.to_thread(catalog.open, task)
    if live is not None and live.model_version == model_version and live.dim == dim:
        if live.offset <= await store.last_offset():
            try:
                stats = await follow_log(live, store, reembed=reembed)
                log.info("%s: caught up %d changes to offset %d (milvus)", task, stats.applied, live.offset)
                return Opened(live)
            except ChangeLogTrimmed as exc:
                log.warning("%s: %s; refilling the collection from the store", task, exc)
        return Opened(live, None, await refill(live, store))
    count = await store.count()
    fresh = await asyncio.to_thread(catalog.create, task, model_version, dim, n_expected=count)  # type: ignore[call-arg]
    report = await fill_from_store(fresh, store)
    await asyncio.to_thread(catalog.tune, fresh)  # type: ignore[attr-defined]  # (HNSW: ef to the recall target)
    await asyncio.to_thread(catalog.promote, task, fresh)
    return Opened(fresh, None, report)


async def fill_from_store(index: IndexEngine, store: GalleryStore, *, page: int = 1000) -> RebuildReport:
    """Every stored record into `index` (upserts: idempotent), then the log from the offset read first."""
    t0 = time.perf_counter()
    offset, count, batch = await store.last_offset(), 0, []
    async for item in store.iter_items(page):
        check_model_version(item.model_version, index.model_version, what=f"stored item {item.id!r}")
        batch.append(item)
        if len(batch) == page:
            await asyncio.to_thread(index.upsert_items, batch)
            count, batch = count + len(batch), []
    if batch:
        await asyncio.to_thread(index.upsert_items, batch)
        count += len(batch)
    index.offset = max(index.offset, offset)
    stats = await follow_log(index, store)
    report = RebuildReport(count, offset, stats.applied, time.perf_counter() - t0)
    log.info("filled %s from the store: %d items at offset %d, %d replayed, %.2f s", index.model_version, count,
             offset, stats.applied, report.seconds)
    return report


async def refill(index: IndexEngine, store: GalleryStore) -> RebuildReport:
    """Empty `index` and fill it again from the store (its log no longer reaches back, or the store was
    replaced). Searches meanwhile see a partial gallery: a rare repair, logged."""
    await asyncio.to_thread(index.clear)  # type: ignore[attr-defined]
    index.offset = 0
    return await fill_from_store(index, store)


async def rebuild_or_refill(index: IndexEngine, store: GalleryStore) -> None:
    """The index again from every stored record, once the change log no longer reaches back to it: a FAISS
    index is rebuilt beside the live one and swapped; a Milvus collection is refilled."""
    if isinstance(index, VectorIndex):
        await rebuild_from_store(index, store)
    else:
        await refill(index, store)


def alias_moved(catalog: EngineCatalog, task: str, serving: IndexEngine) -> SnapshotInfo | None:
    """Milvus: the collection the task's alias names now, when another process moved it off `serving`'s
    (a model upgrade on another replica), described as the snapshot a FAISS replica would adopt; else None."""
    props = catalog.live_properties(task, getattr(serving, "collection", None))  # type: ignore[attr-defined]
    if props is None:
        return None
    return SnapshotInfo(task=task, version=props["name"], path="", model_version=props["ufo.model_version"],
                        dim=int(props["ufo.dim"]), count=0, offset=int(props.get("ufo.offset", 0)), factory="milvus",
                        search_params="", recall=None, recall_k=0, checksum="", built_at=0.0, build_seconds=0.0,
                        faiss_seconds=0.0, job_id="alias")


def reopen_aliased(catalog: EngineCatalog, task: str, info: SnapshotInfo) -> IndexEngine:
    """Milvus: the collection `info` describes (the alias' target), opened afresh; raises when the alias has
    moved on since (the follower's next round sees where to)."""
    index = catalog.reopen(task)  # type: ignore[attr-defined]
    if index is None or index.collection != info.version or index.model_version != info.model_version:
        raise RuntimeError(f"the alias of {task!r} moved again while {info.model_version} was being adopted")
    return index
