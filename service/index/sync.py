"""Keep a VectorIndex in step with its store: catch up on the change log, rebuild beside and swap."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from service.index.vector_index import VectorIndex
from service.index.vectors import check_model_version
from service.store.base import ChangeLogTrimmed, GalleryStore
from service.store.records import Change, Item

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did: items in the new main, the store offset it was built at, journaled
    writes replayed into it, seconds spent."""

    count: int
    offset: int
    replayed: int
    seconds: float


def _apply_page(index: VectorIndex, changes: list[Change]) -> None:
    """Apply a page of changes in order, batching consecutive upserts into one write."""
    run: list[Item] = []
    run_offset = 0
    for change in changes:
        if change.op == "upsert":
            assert change.item is not None
            run.append(change.item)
            run_offset = change.offset
            continue
        if run:
            index.upsert_items(run, offset=run_offset)
            run = []
        index.delete([change.id], offset=change.offset)
    if run:
        index.upsert_items(run, offset=run_offset)


async def catch_up(index: VectorIndex, store: GalleryStore, *, batch: int = 1000) -> int:
    """Apply every store change after `index.offset` (after a snapshot load, say); return how many.
    Raises ModelVersionError on a record of another model version, ChangeLogTrimmed when the log
    no longer reaches back to `index.offset` (see `sync_with_store`)."""
    t0, applied = time.perf_counter(), 0
    while True:
        changes = await store.changes_since(index.offset, batch)
        if changes:
            await asyncio.to_thread(_apply_page, index, changes)
            applied += len(changes)
        if len(changes) < batch:
            break
    if applied:
        log.info("caught up %d changes to offset %d in %.2f s", applied, index.offset, time.perf_counter() - t0)
    return applied


async def _read_all(
    store: GalleryStore, model_version: str, batch: int
) -> tuple[list[str], list[np.ndarray], list[dict]]:
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    metadata: list[dict] = []
    async for item in store.iter_items(batch):
        check_model_version(item.model_version, model_version, what=f"stored item {item.id!r}")
        ids.append(item.id)
        vectors.append(item.vector)
        metadata.append(item.metadata)
    return ids, vectors, metadata


async def rebuild_from_store(
    index: VectorIndex,
    store: GalleryStore,
    *,
    factory: str | None = None,
    search_params: str | None = None,
    train_sample: int | None = None,
    batch: int = 10_000,
) -> RebuildReport:
    """Build a new main from every stored record beside the live index (in a worker thread),
    replay the writes that raced with it, and swap it in. Searches continue throughout."""
    t0 = time.perf_counter()
    index.begin_rebuild()  # before reading the offset: no acknowledged write can slip between
    try:
        offset = await store.last_offset()
        ids, vectors, metadata = await _read_all(store, index.model_version, batch)
        xb = np.stack(vectors) if vectors else np.zeros((0, index.dim), np.float32)
        fresh = await asyncio.to_thread(
            VectorIndex.build, ids, xb, metadata, model_version=index.model_version,
            factory=factory or index.factory,
            search_params=index.search_params if search_params is None else search_params,
            offset=offset, train_sample=train_sample,
        )
        replayed = index.finish_rebuild(fresh)
    except BaseException:
        index.abort_rebuild()
        raise
    report = RebuildReport(len(ids), offset, replayed, time.perf_counter() - t0)
    log.info("rebuilt index from store: %d items at offset %d, %d replayed, %.2f s", report.count,
             report.offset, report.replayed, report.seconds)
    return report


async def sync_with_store(index: VectorIndex, store: GalleryStore, *, batch: int = 1000) -> RebuildReport | int:
    """Catch up from the change log; when it was trimmed past `index.offset`, rebuild from the
    items instead. Returns the changes applied, or the rebuild's report."""
    try:
        return await catch_up(index, store, batch=batch)
    except ChangeLogTrimmed as exc:
        log.warning("%s: rebuilding from the store", exc)
        return await rebuild_from_store(index, store)
