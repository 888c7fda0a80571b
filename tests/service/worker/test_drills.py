"""Fault drills with real processes: `ufo worker` killed with -9 mid-job, redis-server killed and restarted
(AOF on) during writes. A follower keeps answering searches throughout; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.config import IndexSettings, WorkerSettings
from service.store import Item
from service.store.redis_store import RedisStore
from service.worker.follower import IndexFollower
from service.worker.queue_redis import RedisJobQueue
from tests.service.index.data import clustered
from tests.service.worker.conftest import RedisServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
V = "m/1"
D = 32


def items(prefix: str, start: int, n: int, seed: int) -> list[Item]:
    xb = clustered(n, D, seed=seed)
    return [Item(f"{prefix}{start + k}", xb[k], {"k": start + k}, V) for k in range(n)]


def start_worker(redis_url: str, data_dir: Path, namespace: str, consumer: str, *extra: str) -> subprocess.Popen:
    """`ufo worker` as its own process (the CLI module, as the console script runs it)."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "UFO_STORE_URL": redis_url, "UFO_DATA_DIR": str(data_dir),
                        "UFO_WORKER__NAMESPACE": namespace, "UFO_INDEX__FLAT_BELOW": "1000",
                        "UFO_INDEX__TUNE_QUERIES": "100", "OMP_NUM_THREADS": "1"}
    log = (data_dir / f"worker-{consumer}.log").open("wb")  # a file, not a pipe nobody drains
    return subprocess.Popen([sys.executable, "-m", "ufo_cli", "worker", "--consumer", consumer, "--claim-idle-s", "1",
                             "--heartbeat-s", "0.25", "--faiss-threads", "1", *extra],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


async def until(predicate, timeout_s: float, what: str) -> None:  # noqa: ANN001
    for _ in range(int(timeout_s / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Load:
    """Searches against the follower's live index until stopped; failures are counted, not raised."""

    def __init__(self, follower: IndexFollower):
        self.follower, self.ok, self.failures = follower, 0, []
        self.stop = asyncio.Event()
        self.xq = clustered(32, D, seed=77)

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                hits = self.follower.index.search(self.xq[self.ok % 32], 10).hits[0]
                assert len(hits) == 10
                self.ok += 1
            except Exception as exc:
                self.failures.append(exc)
            await asyncio.sleep(0.002)


async def test_worker_killed_mid_build_job_is_picked_up_again(redis_server: RedisServer, tmp_path: Path,
                                                              namespace: str, worker_settings: WorkerSettings,
                                                              index_settings: IndexSettings) -> None:
    task = namespace
    store = await RedisStore.open(redis_server.url, task)
    for start in range(0, 6000, 1000):
        await store.upsert(items("i", start, 1000, seed=start))
    queue = await RedisJobQueue.open(redis_server.url, worker_settings)
    follower = await IndexFollower.open(task, store, queue, index_settings, model_version=V, dim=D)
    assert follower.index.factory == "Flat" and (await queue.job_status(task)).state == "queued"  # "startup"
    await follower.start()
    load = Load(follower)
    searching = asyncio.create_task(load.run())

    doomed = start_worker(redis_server.url, tmp_path, namespace, "doomed", "--drill-pause-s", "120")
    try:
        await until(lambda: _state_is(queue, task, "running", "doomed"), 60, "the first worker to claim the job")
        await store.upsert(items("w", 0, 50, seed=500))  # written while the job is held
        doomed.send_signal(signal.SIGKILL)
        assert doomed.wait(timeout=10) == -signal.SIGKILL
    finally:
        if doomed.poll() is None:
            doomed.kill()
    served_before = load.ok
    await asyncio.sleep(0.3)
    assert load.ok > served_before and follower.swaps == 0  # the old index keeps serving
    assert (await queue.job_status(task)).state == "running"  # the dead worker's claim, not yet stale

    rescuer = start_worker(redis_server.url, tmp_path, namespace, "rescuer", "--max-jobs", "1")
    try:
        assert rescuer.wait(timeout=90) == 0, (tmp_path / "worker-rescuer.log").read_text()[-2000:]
    finally:
        if rescuer.poll() is None:
            rescuer.kill()
    status = await queue.job_status(task)
    assert status.state == "done" and status.worker == "rescuer" and status.attempts == 2 and status.error == ""
    await until(lambda: _true(follower.swaps >= 1), 30, "the follower to adopt the snapshot")
    await store.upsert(items("w", 50, 50, seed=501))
    await follower.sync_to()
    load.stop.set()
    await searching
    latest = await queue.latest_snapshot(task)
    assert latest is not None and latest.count >= 6000 and latest.factory.startswith("IVF")
    assert len(follower.index) == await store.count() == 6100  # no item lost
    assert load.failures == [] and load.ok > 50
    await follower.close()
    await queue.close()
    await store.close()


async def _state_is(queue: RedisJobQueue, task: str, state: str, worker: str) -> bool:
    status = await queue.job_status(task)
    return status.state == state and status.worker == worker


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
async def test_redis_restart_during_writes_loses_no_acknowledged_write(
        tmp_path: Path, appendfsync: str, index_settings: IndexSettings, worker_settings: WorkerSettings) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync).start()
    store = await RedisStore.open(server.url, "face")
    queue = await RedisJobQueue.open(server.url, worker_settings)
    follower = await IndexFollower.open("face", store, queue, index_settings, model_version=V, dim=D)
    await follower.start()
    acknowledged: dict[str, Item] = {}
    errors = [0]
    stop = asyncio.Event()

    async def write() -> None:
        n = 0
        while not stop.is_set():
            batch = items("a", n, 5, seed=n)
            n += 5
            try:
                await store.upsert(batch)
            except Exception:  # not acknowledged: may or may not be there, never counted
                errors[0] += 1
                await asyncio.sleep(0.02)
                continue
            acknowledged.update((item.id, item) for item in batch)

    writer = asyncio.create_task(write())
    try:
        await asyncio.sleep(0.6)
        before = len(acknowledged)
        server.kill()  # SIGKILL: a crash, mid-write
        await asyncio.sleep(0.3)
        server.start()  # same port and folder: the AOF is replayed
        await asyncio.sleep(0.8)
    finally:
        stop.set()
        await writer
    assert before > 20 and len(acknowledged) > before and errors[0] > 0
    stored = {item.id: item async for item in store.iter_items()}
    lost = [i for i in acknowledged if i not in stored]
    assert lost == [], f"{len(lost)} acknowledged writes lost"
    for item_id, item in acknowledged.items():
        np.testing.assert_array_equal(stored[item_id].vector, item.vector)
    changes = await store.changes_since(0, 100_000)  # the log survived with the items, in step
    assert len(changes) == len(stored) == await store.count() and changes[-1].offset == await store.last_offset()
    await follower.sync_to()  # the follower rode through the restart and caught up
    assert len(follower.index) == len(stored)
    await follower.close()
    await queue.close()
    await store.close()
    server.stop()


def test_worker_cli() -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "ufo_cli", "worker", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--claim-idle-s" in run.stdout
    run = subprocess.run([sys.executable, "-m", "ufo_cli", "worker", "--store-url", "sqlite:////tmp/none"], cwd=ROOT,
                         env=env | {"UFO_WORKER__QUEUE_URL": ""}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "ufo worker needs Redis" in run.stderr
