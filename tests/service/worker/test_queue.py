"""The job queues: dedupe per task, claim / ack, XAUTOCLAIM of a silent worker's job, announcements;
the in-process queue with the same interface."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from service.config import IndexSettings, Settings, WorkerSettings
from service.store import Item, SQLiteStore
from service.worker.queue import open_job_queue, queue_url
from service.worker.queue_local import LocalJobQueue
from service.worker.queue_redis import RedisJobQueue
from service.worker.records import SnapshotInfo
from service.worker.runner import process
from service.worker.snapshots import SnapshotStore
from tests.service.index.data import clustered
from tests.service.worker.conftest import RedisServer

pytestmark = pytest.mark.anyio


def info(task: str, offset: int, built_at: float, version: str = "v") -> SnapshotInfo:
    return SnapshotInfo(task, version, "/nowhere", "m/1", 8, 0, offset, "Flat", "", None, 10, "c", built_at, 1.0, 0.5)


@pytest.fixture
async def queue(redis_server: RedisServer, worker_settings: WorkerSettings):
    opened = await RedisJobQueue.open(redis_server.url, worker_settings)
    yield opened
    await opened.close()


async def test_requests_dedupe_per_task_until_done(queue: RedisJobQueue) -> None:
    first = await queue.request_rebuild("face", "delta")
    again = await queue.request_rebuild("face", "request")
    other = await queue.request_rebuild("person", "request")
    assert first.state == again.state == "queued" and first.job_id == again.job_id != other.job_id
    claimed = await queue.claim("w1", block_s=0.1)
    assert claimed is not None and claimed.job.id == first.job_id and claimed.deliveries == 1
    await queue.start(claimed, "w1")
    running = await queue.request_rebuild("face", "request")  # joins the running job
    assert running.state == "running" and running.job_id == first.job_id and running.worker == "w1"
    await queue.finish(claimed, info=info("face", 10, 1.0))
    done = await queue.job_status("face")
    assert done.state == "done" and done.last_version == "v" and done.finished_at is not None
    fresh = await queue.request_rebuild("face", "schedule")
    assert fresh.state == "queued" and fresh.job_id != first.job_id and fresh.last_version == "v"
    entries = await queue.client.xlen(queue.stream)
    assert entries == 2  # person + the fresh face job; the finished one was deleted


async def test_silent_workers_job_is_claimed_again(queue: RedisJobQueue) -> None:
    status = await queue.request_rebuild("face", "request")
    dead = await queue.claim("dead", block_s=0.1)
    assert dead is not None
    assert await queue.claim("alive", block_s=0.1) is None  # not idle long enough yet
    await asyncio.sleep(queue.options.claim_idle_s + 0.2)
    taken = await queue.claim("alive", block_s=0.1)
    assert taken is not None and taken.job.id == status.job_id and taken.deliveries == 2
    assert not await queue.heartbeat(dead, "dead")  # the old owner learns it lost the job
    assert await queue.heartbeat(taken, "alive")


async def test_heartbeats_keep_a_running_job(queue: RedisJobQueue) -> None:
    await queue.request_rebuild("face", "request")
    claimed = await queue.claim("w1", block_s=0.1)
    assert claimed is not None
    for _ in range(6):  # 1.5 s > claim_idle_s, renewed every 0.25 s
        await asyncio.sleep(0.25)
        assert await queue.heartbeat(claimed, "w1")
    assert await queue.claim("w2", block_s=0.1) is None


async def test_job_given_up_after_max_attempts(queue: RedisJobQueue, tmp_path: Path) -> None:
    queue.options = queue.options.model_copy(update={"claim_idle_s": 0.1, "max_attempts": 2})
    await queue.request_rebuild("face", "request")
    for consumer in ("a", "b"):
        assert await queue.claim(consumer, block_s=0.1) is not None
        await asyncio.sleep(0.15)
    third = await queue.claim("c", block_s=0.1)
    assert third is not None and third.deliveries == 3
    settings = Settings(store_url=f"sqlite:///{tmp_path}", data_dir=tmp_path, worker=queue.options)
    assert await process(queue, third, "c", settings, SnapshotStore(tmp_path)) == "failed"
    status = await queue.job_status("face")
    assert status.state == "failed" and "gave up after 2 attempts" in status.error
    assert await queue.client.xlen(queue.stream) == 0


async def test_announce_keeps_the_newest_and_publishes(queue: RedisJobQueue) -> None:
    subscription = queue.subscribe("face")
    assert await subscription.next(0.2) is None  # subscribes
    assert await queue.announce(info("face", 10, 2.0, "b"))
    assert not await queue.announce(info("face", 9, 3.0, "older-offset"))
    assert not await queue.announce(info("face", 10, 1.0, "older-build"))
    assert await queue.announce(info("face", 10, 5.0, "c"))
    assert (await queue.latest_snapshot("face")).version == "c"
    heard = [await subscription.next(1.0), await subscription.next(1.0)]
    assert [h.version for h in heard if h] == ["b", "c"]
    await subscription.close()


async def test_open_job_queue_picks_redis_or_in_process(redis_server: RedisServer, tmp_path: Path) -> None:
    local = Settings(store_url=f"sqlite:///{tmp_path}", data_dir=tmp_path)
    assert queue_url(local) is None and isinstance(await open_job_queue(local), LocalJobQueue)
    distributed = Settings(store_url=redis_server.url, data_dir=tmp_path)
    assert queue_url(distributed) == redis_server.url
    opened = await open_job_queue(distributed)
    assert isinstance(opened, RedisJobQueue)
    await opened.close()


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_in_process_queue_runs_the_job_in_a_thread_or_a_child(sqlite_store: SQLiteStore, tmp_path: Path,
                                                                     isolation: str) -> None:
    xb = clustered(1500, 16, seed=3)
    await sqlite_store.upsert([Item(f"i{i}", xb[i], {}, "m/1") for i in range(1500)])
    snapshots = SnapshotStore(tmp_path / "snapshots")
    local = LocalJobQueue(f"sqlite:///{tmp_path}/store", snapshots, IndexSettings(flat_below=1000, tune_queries=50),
                          isolation=isolation)  # type: ignore[arg-type]
    subscription = local.subscribe("face")
    first = await local.request_rebuild("face", "request", model_version="m/1")
    joined = await local.request_rebuild("face", "delta")
    assert joined.job_id == first.job_id and first.state in ("queued", "running")
    heard = await subscription.next(30.0)
    assert heard is not None and heard.count == 1500 and heard.factory.startswith("IVF")
    for _ in range(100):  # the status flips right after the announcement
        status = await local.job_status("face")
        if status.state == "done":
            break
        await asyncio.sleep(0.02)
    assert status.state == "done" and status.last_version == heard.version and status.last_build_seconds
    assert (await local.latest_snapshot("face")).version == heard.version
    failing = await local.request_rebuild("face", "request", model_version="other/2")
    assert failing.job_id != first.job_id
    deadline = time.monotonic() + 30
    while (await local.job_status("face")).state != "failed" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert "ModelVersionError" in (await local.job_status("face")).error  # the cause, across the process too
    if isolation == "process":  # the jobs ran in one child process, alive until the queue closes
        children = [process.pid for process in local._pool._processes.values()]  # type: ignore[union-attr]
        assert len(children) == 1 and children[0] != os.getpid()
    await subscription.close()
    await local.close()
