"""Change-log retention: after a snapshot is announced the log is trimmed behind it (keeping `log_retain`
entries), by the in-process job queue and by the Redis worker; readers that fell behind rebuild from the
items, readers at the snapshot replay, and nothing is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.config import IndexSettings, Settings, WorkerSettings
from service.index import VectorIndex
from service.index.sync import sync_with_store
from service.store import SQLiteStore
from service.store.base import ChangeLogTrimmed
from service.store.redis_store import RedisStore
from service.worker.follower import IndexFollower
from service.worker.queue_local import LocalJobQueue
from service.worker.queue_redis import RedisJobQueue
from service.worker.retention import trim_point
from service.worker.runner import process
from service.worker.snapshots import SnapshotStore
from tests.service.worker.conftest import RedisServer
from tests.service.worker.test_follower import D, V, batch, live_ids, wait_for

pytestmark = pytest.mark.anyio

RETAIN = 100


def test_trim_point() -> None:
    assert trim_point(1000, 100) == 901  # entries 1..900 go, 901..1000 stay before the snapshot
    assert trim_point(1000, 0) == 1001  # everything the snapshot holds
    assert trim_point(50, 100) == 0 and trim_point(1000, -1) == 0  # too short / retention off


async def write_history(store: object, rounds: int = 12) -> None:
    """1200 items in rounds, each followed by a few deletes: a log of ~1250 entries."""
    for r in range(rounds):
        await store.upsert(batch(100 * r, 100, seed=r))  # type: ignore[attr-defined]
        for k in range(0, 100 * r, 211):
            await store.delete(f"i{k}")  # type: ignore[attr-defined]


async def test_in_process_rebuild_trims_the_log_and_laggards_rebuild(
        sqlite_store: SQLiteStore, tmp_path: Path, index_settings: IndexSettings) -> None:
    opts = index_settings.model_copy(update={"log_retain": RETAIN})
    await sqlite_store.upsert(batch(0, 10, seed=0))
    laggard = VectorIndex(D, V)
    await sync_with_store(laggard, sqlite_store)  # a copy at offset 10, e.g. a gateway's old snapshot
    await write_history(sqlite_store)
    snapshots = SnapshotStore(tmp_path / "snapshots")
    queue = LocalJobQueue(f"sqlite:///{tmp_path}/store", snapshots, opts)
    follower = await IndexFollower.open("face", sqlite_store, queue, opts, model_version=V, dim=D, snapshots=snapshots)
    await follower.start()
    await wait_for(lambda: follower.swaps == 1)
    info = follower.snapshot
    assert info is not None
    for _ in range(600):  # the job trims after it announces, and the follower may adopt in between
        if (await queue.job_status("face")).state == "done":
            break
        await asyncio.sleep(0.05)
    with pytest.raises(ChangeLogTrimmed):
        await sqlite_store.changes_since(0)
    kept = await sqlite_store.changes_since(info.offset - RETAIN, limit=10_000)
    assert len(kept) == await sqlite_store.last_offset() - (info.offset - RETAIN)  # nothing after the point lost
    with pytest.raises(ChangeLogTrimmed):
        await sqlite_store.changes_since(info.offset - RETAIN - 1)

    await sqlite_store.upsert(batch(9000, 5, seed=90))  # writes after the trim still flow
    await follower.sync_to()
    assert "i9004" in follower.index and len(follower.index) == await sqlite_store.count()
    report = await sync_with_store(laggard, sqlite_store)  # behind the trim: rebuilt from the items
    assert not isinstance(report, int) and len(laggard) == await sqlite_store.count()
    fresh = await IndexFollower.open("face", sqlite_store, queue, opts, model_version=V, dim=D, snapshots=snapshots)
    assert fresh.snapshot == info and len(fresh.index) == await sqlite_store.count()  # snapshot + replay
    await follower.close()
    await queue.close()


async def test_redis_worker_trims_the_stream(redis_server: RedisServer, tmp_path: Path, namespace: str,
                                             worker_settings: WorkerSettings, index_settings: IndexSettings) -> None:
    task = namespace
    opts = index_settings.model_copy(update={"log_retain": RETAIN})
    store = await RedisStore.open(redis_server.url, task)
    queue = await RedisJobQueue.open(redis_server.url, worker_settings)
    await write_history(store)
    follower = await IndexFollower.open(task, store, queue, opts, model_version=V, dim=D)  # requests a rebuild
    await follower.start()
    settings = Settings(store_url=redis_server.url, data_dir=tmp_path, index=opts, worker=worker_settings)
    claimed = await queue.claim("test-worker", block_s=1.0)
    assert claimed is not None
    head = await store.last_offset()
    assert len(await store.changes_since(0, limit=10_000)) == head
    assert await process(queue, claimed, "test-worker", settings, SnapshotStore(tmp_path / "snapshots")) == "done"
    await wait_for(lambda: follower.swaps == 1)
    offset = follower.snapshot.offset  # type: ignore[union-attr]
    with pytest.raises(ChangeLogTrimmed):
        await store.changes_since(0)
    assert len(await store.changes_since(offset - RETAIN, limit=10_000)) == head - (offset - RETAIN)
    view = follower.index.view
    assert await live_ids(store) == {view.ids[k] for k in range(len(view.ids)) if view.alive[k]}
    await follower.close()
    await queue.close()
    await store.close()
