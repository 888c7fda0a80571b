"""The gateway side: snapshots adopted under load, writes from the change log, triggers, replicas that
converge, the recall canary."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faiss
import numpy as np
import pytest

from service.config import IndexSettings, Settings, WorkerSettings
from service.index import CoalescingSearcher, VectorIndex, build_index
from service.store import Item, SQLiteStore
from service.store.redis_store import RedisStore
from service.worker.canary import ExactMain, RecallCanary
from service.worker.follower import IndexFollower
from service.worker.queue_local import LocalJobQueue
from service.worker.queue_redis import RedisJobQueue
from service.worker.rebuild import run_rebuild
from service.worker.records import Job
from service.worker.runner import process
from service.worker.snapshots import SnapshotStore
from service.worker.triggers import rebuild_reason
from tests.service.index.data import clustered
from tests.service.worker.conftest import RedisServer

pytestmark = pytest.mark.anyio

V = "m/1"
D = 16


def batch(start: int, n: int, seed: int) -> list[Item]:
    xb = clustered(n, D, seed=seed)
    return [Item(f"i{start + k}", xb[k], {"n": start + k}, V) for k in range(n)]


async def live_ids(store: object) -> set[str]:
    return {item.id async for item in store.iter_items()}  # type: ignore[attr-defined]


async def wait_for(predicate, timeout_s: float = 30.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_rebuild_triggers() -> None:
    opts = IndexSettings(rebuild_delta_items=10, rebuild_tombstone_ratio=0.2, rebuild_interval_s=60)
    index = VectorIndex.build([f"a{i}" for i in range(20)], clustered(20, D), model_version=V)
    assert rebuild_reason(index, opts, last_build_at=1000.0, now=1030.0) is None
    assert rebuild_reason(index, opts, last_build_at=1000.0, now=1061.0) == "schedule"
    index.delete([f"a{i}" for i in range(5)])
    assert rebuild_reason(index, opts, 1000.0, 1001.0) == "tombstones"
    index.upsert([f"b{i}" for i in range(10)], clustered(10, D, seed=2), model_version=V)
    assert rebuild_reason(index, opts, 1000.0, 1001.0) == "delta"


async def test_in_process_mode_follows_rebuilds_and_respects_tombstones(
        sqlite_store: SQLiteStore, tmp_path: Path, index_settings: IndexSettings) -> None:
    await sqlite_store.upsert(batch(0, 1500, seed=1))
    snapshots = SnapshotStore(tmp_path / "snapshots")
    queue = LocalJobQueue(f"sqlite:///{tmp_path}/store", snapshots, index_settings)
    follower = await IndexFollower.open("face", sqlite_store, queue, index_settings, model_version=V, dim=D,
                                        snapshots=snapshots)
    assert follower.index.factory == "Flat" and len(follower.index) == 1500  # exact until the job is done
    live = follower.index
    await follower.start()
    await wait_for(lambda: follower.swaps == 1)
    assert follower.index is live and live.factory.startswith("IVF")  # same object, new generation
    # writes through the gateway path: store, then sync_to; deletes interleaved
    deleted = set()
    for round_ in range(6):
        offset = await sqlite_store.upsert(batch(1500 + 100 * round_, 100, seed=10 + round_))
        for k in range(0, 1500, 97):
            item_id = f"i{k + round_}"
            if await sqlite_store.delete(item_id):
                deleted.add(item_id)
        await follower.sync_to(await sqlite_store.last_offset())
        assert follower.index.offset >= offset
        hits = follower.index.search(clustered(20, D, seed=50 + round_), 10).hits
        assert not deleted & {h.id for row in hits for h in row}  # tombstones hold mid-stream
    await wait_for(lambda: follower.swaps >= 2)  # the delta trigger (≥ 400 writes) fired a second job
    await follower.sync_to()
    assert {follower.index.view.ids[label] for label in np.flatnonzero(follower.index.view.alive)} == \
        await live_ids(sqlite_store)
    status = await follower.status()
    assert status["size"] == await sqlite_store.count() and status["job"]["state"] == "done"
    assert status["snapshot"]["recall"] >= index_settings.recall_target and status["type"].startswith("IVF")
    await follower.close()
    await queue.close()


async def test_swap_under_concurrent_searches_fails_none(sqlite_store: SQLiteStore, tmp_path: Path,
                                                         index_settings: IndexSettings) -> None:
    await sqlite_store.upsert(batch(0, 2000, seed=1))
    snapshots = SnapshotStore(tmp_path)
    queue = LocalJobQueue(f"sqlite:///{tmp_path}/store", snapshots, index_settings)
    follower = await IndexFollower.open("face", sqlite_store, queue, index_settings, model_version=V, dim=D)
    stop, failures, searches = asyncio.Event(), [], [0]
    xq = clustered(64, D, seed=7)

    async def client(searcher: CoalescingSearcher, c: int) -> None:
        while not stop.is_set():
            try:
                result = await searcher.search(xq[c % 64], 10)
                assert len(result.hits[0]) == 10
                searches[0] += 1
            except Exception as exc:  # counted, not raised: the test reports them all
                failures.append(exc)
            await asyncio.sleep(0)

    async with CoalescingSearcher(follower.index, omp_threads=1) as searcher:
        clients = [asyncio.create_task(client(searcher, c)) for c in range(8)]
        for round_ in range(3):  # build a snapshot, write more, adopt it: three swaps under load
            info = await run_rebuild(Job("face", "request"), sqlite_store, snapshots, index_settings)
            await sqlite_store.upsert(batch(2000 + 50 * round_, 50, seed=20 + round_))
            await sqlite_store.delete(f"i{round_}")
            assert await follower.adopt(info)
            assert not await follower.adopt(info)  # once
        await follower.sync_to()
        stop.set()
        await asyncio.gather(*clients)
    assert failures == [] and searches[0] > 100 and follower.swaps == 3
    assert len(follower.index) == await sqlite_store.count() == 2000 + 150 - 3


async def test_two_replicas_converge(redis_server: RedisServer, tmp_path: Path, namespace: str,
                                     worker_settings: WorkerSettings, index_settings: IndexSettings) -> None:
    task = namespace  # a fresh task (key prefix) on the shared server
    stores = [await RedisStore.open(redis_server.url, task) for _ in range(2)]
    queues = [await RedisJobQueue.open(redis_server.url, worker_settings) for _ in range(2)]
    replicas = [await IndexFollower.open(task, s, q, index_settings, model_version=V, dim=D)
                for s, q in zip(stores, queues, strict=True)]
    for replica in replicas:
        await replica.start()
    # each replica writes through its own store connection; deletes from both
    for k in range(6):
        writer, store = replicas[k % 2], stores[k % 2]
        await writer.sync_to(await store.upsert(batch(300 * k, 300, seed=k)))
        if await store.delete(f"i{7 * k}"):
            await writer.sync_to(await store.last_offset())
    # a worker (same code as `ufo worker`) builds a snapshot both replicas adopt
    settings = Settings(store_url=redis_server.url, data_dir=tmp_path, index=index_settings, worker=worker_settings)
    await replicas[0].request_rebuild("request")
    claimed = await queues[0].claim("test-worker", block_s=1.0)
    assert claimed is not None
    assert await process(queues[0], claimed, "test-worker", settings, SnapshotStore(tmp_path / "snapshots")) == "done"
    await wait_for(lambda: all(r.swaps >= 1 for r in replicas))
    await stores[1].upsert(batch(5000, 100, seed=99))  # after the snapshot: both pick it up from the log
    await stores[0].delete("i301")
    for replica in replicas:
        await replica.sync_to()
    xq = clustered(50, D, seed=123)
    results = [r.index.search(xq, 10) for r in replicas]
    assert results[0].I.tolist() == results[1].I.tolist()
    np.testing.assert_array_equal(results[0].D, results[1].D)
    assert replicas[0].index.factory.startswith("IVF") and len(replicas[0].index) == len(replicas[1].index) == \
        await stores[0].count()
    assert "i301" not in replicas[1].index and "i5099" in replicas[0].index
    for replica, store, queue in zip(replicas, stores, queues, strict=True):
        await replica.close()
        await queue.close()
        await store.close()


@pytest.mark.parametrize("factory", ["Flat", "IVF32,Flat", "HNSW16", "IVF32,PQ8x4fs,RFlat"])
def test_exact_main_is_brute_force(factory: str) -> None:
    xb = clustered(3000, D, seed=1)
    main = build_index(xb, np.arange(3000), factory, use_gpu=False)
    xq = clustered(20, D, seed=2)
    D_exact, I_exact = faiss.knn(xq, xb, 10, metric=faiss.METRIC_INNER_PRODUCT)
    D_got, I_got = ExactMain(main).search(xq, 10)
    np.testing.assert_array_equal(I_got, I_exact)
    np.testing.assert_allclose(D_got, D_exact, rtol=1e-5)


def test_recall_canary_sees_a_degraded_operating_point() -> None:
    xb = clustered(4000, D, seed=1, centres=200)
    ivf = VectorIndex.build([f"i{k}" for k in range(4000)], xb, model_version=V, factory="IVF64,Flat",
                            search_params="nprobe=1", use_gpu=False)
    seen = []
    canary = RecallCanary(k=10, per_round=32, on_result=seen.append)
    assert canary.measure(ivf) is None  # no live queries yet
    canary.observe(clustered(100, D, seed=5, centres=200))
    low = canary.measure(ivf)
    ivf.set_search_params("nprobe=64")
    assert low is not None and low < 0.95 and canary.measure(ivf) == 1.0 and seen == [low, 1.0]
    pq = VectorIndex.build([f"i{k}" for k in range(4000)], xb, model_version=V, factory="IVF16,PQ4x4fs", use_gpu=False)
    assert canary.measure(pq) is None  # no exact vectors kept: nothing to compare with
