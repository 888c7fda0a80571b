"""Apply the store's change log to an index: the ONE path by which writes reach a follower's index.

Every write, local or from another replica, enters the index from the log, in offset order; so two
replicas that start from the same snapshot apply the same operations in the same order and hold the
same index. A record of another model version (written during a model upgrade) is re-embedded from its
kept image when a `Reembedder` is given, else skipped and counted (the index keeps the copy it has):
vectors of two models never meet in one index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from service.index import VectorIndex
from service.store.base import GalleryStore
from service.store.records import Change, Item
from service.worker.images import ImageKeeper

log = logging.getLogger(__name__)

Embed = Callable[[Sequence[bytes], str], Awaitable[np.ndarray]]
"""embed(images, model_version) → (n, d) float32 vectors: the inference backend's embed for one task."""


@dataclass(frozen=True, slots=True)
class Reembedder:
    """Turns records into records of `model_version` by embedding their kept images."""

    images: ImageKeeper
    embed: Embed
    model_version: str

    async def convert(self, items: Sequence[Item]) -> list[Item | None]:
        """Each record as a record of `model_version` (re-embedded from its kept image; records already of
        that version pass as they are), or None where the image is not kept."""
        out: list[Item | None] = [item if item.model_version == self.model_version else None for item in items]
        wanted = [(i, item.image_ref) for i, item in enumerate(items) if out[i] is None and item.image_ref is not None]
        images = await asyncio.to_thread(lambda: [self.images.get(ref) for _, ref in wanted])  # one thread hop
        todo = [(i, data) for (i, _), data in zip(wanted, images, strict=True) if data is not None]
        if todo:
            xb = np.asarray(await self.embed([data for _, data in todo], self.model_version), dtype=np.float32)
            if xb.shape[0] != len(todo):
                raise ValueError(f"embed returned {xb.shape[0]} vectors for {len(todo)} images")
            for row, (i, _) in enumerate(todo):
                out[i] = replace(items[i], vector=xb[row], model_version=self.model_version)
        return out


@dataclass
class ApplyStats:
    """Counts of one catch-up: changes applied, foreign records re-embedded, foreign records skipped."""

    applied: int = 0
    reembedded: int = 0
    skipped: int = 0


async def _convert_foreign(index: VectorIndex, changes: list[Change], reembed: Reembedder | None,
                           stats: ApplyStats) -> dict[int, Item | None]:
    """Offset → record of the index's version, for every foreign upsert in the page (None: skip it)."""
    foreign = [c for c in changes if c.item is not None and c.item.model_version != index.model_version]
    if not foreign:
        return {}
    items: list[Item | None] = [None] * len(foreign)
    if reembed is not None and reembed.model_version == index.model_version:
        items = await reembed.convert([c.item for c in foreign if c.item is not None])
    stats.reembedded += sum(item is not None for item in items)
    stats.skipped += sum(item is None for item in items)
    return {c.offset: item for c, item in zip(foreign, items, strict=True)}


def _apply_page(index: VectorIndex, changes: list[Change], converted: dict[int, Item | None],
                skip: Callable[[int], bool] | None) -> int:
    """Apply in order, batching consecutive upserts; returns how many changes were applied."""
    run: list[Item] = []
    run_offset, applied = 0, 0
    for change in changes:
        if skip is not None and skip(change.offset):
            continue
        if change.op == "upsert":
            item = converted.get(change.offset, change.item)
            if item is not None:
                run.append(item)
                run_offset = change.offset
                applied += 1
            continue
        if run:
            index.upsert_items(run, offset=run_offset)
            run = []
        index.delete([change.id], offset=change.offset)
        applied += 1
    if run:
        index.upsert_items(run, offset=run_offset)
    index.offset = max(index.offset, changes[-1].offset)  # skipped tail changes count as seen
    return applied


async def follow_log(index: VectorIndex, store: GalleryStore, *, reembed: Reembedder | None = None,
                     skip: Callable[[int], bool] | None = None, until: int | None = None,
                     batch: int = 1000) -> ApplyStats:
    """Apply every change after `index.offset` (up to `until` when given, else to the end of the log).
    Raises ChangeLogTrimmed when the log no longer reaches back to `index.offset`."""
    t0, stats = time.perf_counter(), ApplyStats()
    while until is None or index.offset < until:
        changes = await store.changes_since(index.offset, batch)
        if until is not None:
            changes = [c for c in changes if c.offset <= until]
        if not changes:
            break
        converted = await _convert_foreign(index, changes, reembed, stats)
        stats.applied += await asyncio.to_thread(_apply_page, index, changes, converted, skip)
        if len(changes) < batch:
            break
    if stats.applied or stats.skipped:
        log.debug("applied %d changes to offset %d (%d re-embedded, %d foreign skipped) in %.1f ms", stats.applied,
                  index.offset, stats.reembedded, stats.skipped, 1e3 * (time.perf_counter() - t0))
    if stats.skipped:
        log.warning("skipped %d records of another model version (no kept image or no embedder for %s)",
                    stats.skipped, index.model_version)
    return stats
