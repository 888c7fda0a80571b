"""The Milvus form of a rebuild: the task's collection made again beside the live one, for its current size.

Milvus builds and compacts a collection's index itself, but never changes its type: a collection made exact
(FLAT, below `index.flat_below` items) stays FLAT however large it grows, and an HNSW `ef` is tuned once, for
the size the collection had. A rebuild (`POST .../index/rebuild`, or the follower when a FLAT collection has
grown past `flat_below` or an HNSW one has doubled since its ef was tuned) makes a new collection of the same
model version with the index type of today's size, fills it from the store while the live one serves, tunes
it, catches it up under the follower's sync lock and moves the alias (`IndexFollower.cut_over`): the old
collection is retired like an upgrade's. Other replicas see the alias name another collection of their own
model version and switch to it (`adopt_same_version`). When another process moved the alias meanwhile, the
new collection is dropped and that one is adopted instead: two replicas rebuilding at once never leave two
live collections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from service.worker.changes import follow_log
from service.worker.live_index import fill_from_store, reopen_aliased
from service.worker.records import JobStatus

if TYPE_CHECKING:
    from service.config import IndexSettings
    from service.index.engine import IndexEngine
    from service.inference import ModelInfo
    from service.store.base import GalleryStore
    from service.worker.records import SnapshotInfo
    from service.worker.serving import Serving

log = logging.getLogger(__name__)
GROWTH = 2.0  # an HNSW collection is made (and tuned) again each time it doubles: a handful of times in its life


class Follower(Protocol):
    """What these steps use of `IndexFollower` (which calls them): named here so neither imports the other."""

    task: str
    store: GalleryStore
    catalog: Any  # the Milvus catalog
    swap_lock: asyncio.Lock

    @property
    def index(self) -> IndexEngine: ...

    @property
    def serving(self) -> Serving: ...

    async def cut_over(self, index: IndexEngine, *, info: ModelInfo | None = None, promote: bool = True) -> None: ...


def recreate_reason(index: IndexEngine, opts: IndexSettings, size: int) -> str | None:
    """'size' when an exact (FLAT) collection of `size` rows has grown past `flat_below`, or an HNSW one to
    `GROWTH` times the size its ef was tuned at (a graph's recall at a fixed ef falls as it grows); else None."""
    kind = getattr(index, "index_type", None)
    tuned_at = getattr(index, "tuned_count", None)
    if (kind == "FLAT" and size >= opts.flat_below) or (kind == "HNSW" and tuned_at and size >= GROWTH * tuned_at):
        return "size"
    return None


async def recreate(follower: Follower, job: JobStatus) -> JobStatus:
    """Run one rebuild of `follower`'s collection (see the module docstring); returns the finished job."""
    catalog, task = follower.catalog, follower.task
    assert catalog is not None
    t0 = time.perf_counter()
    async with follower.swap_lock:  # no upgrade or adoption meanwhile
        live, info = follower.index, follower.serving.info
        count = await follower.store.count()
        fresh = await asyncio.to_thread(catalog.create, task, live.model_version, live.dim,  # type: ignore[call-arg]
                                        n_expected=count, generation=f"r{time.time_ns():x}")
        try:
            report = await fill_from_store(fresh, follower.store)
            await asyncio.to_thread(catalog.tune, fresh)  # type: ignore[attr-defined]
            if await asyncio.to_thread(catalog.aliased, task) != live.collection:  # type: ignore[attr-defined]
                raise RuntimeError("another process moved the alias meanwhile: its collection is adopted instead")
            await follower.cut_over(fresh, info=info)
        except BaseException:
            await asyncio.to_thread(catalog.drop, fresh.collection)  # type: ignore[attr-defined]
            raise
    seconds = time.perf_counter() - t0
    log.info("%s: collection made again as %s (%s, %s): %d items in %.1f s", task, fresh.collection,
             fresh.factory, fresh.search_params or "exact", report.count, seconds)
    return JobStatus(task, "done", job.job_id, job.reason, job.queued_at, job.started_at, time.time(), 1,
                     last_build_at=time.time(), last_build_seconds=seconds, last_version=fresh.collection)


async def adopt_same_version(follower: Follower, info: SnapshotInfo) -> None:
    """Another process made this model version's collection again and moved the alias: serve that one."""
    async with follower.swap_lock:
        index = await asyncio.to_thread(reopen_aliased, follower.catalog, follower.task, info)
        await follow_log(index, follower.store)
        await follower.cut_over(index, info=follower.serving.info, promote=False)
