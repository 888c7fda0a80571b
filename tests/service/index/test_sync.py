"""Index ↔ store: catch up from the change log after a snapshot; rebuild beside and swap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from service.index import ModelVersionError, RebuildReport, VectorIndex, catch_up, rebuild_from_store, sync_with_store
from service.index.snapshot import load_snapshot, save_snapshot
from service.store import ChangeLogTrimmed, Item, SQLiteStore
from tests.service.index.data import clustered

pytestmark = pytest.mark.anyio

V = "v3"
D = 16


def items(start: int, stop: int, seed: int, version: str = V) -> list[Item]:
    xb = clustered(stop - start, D, seed=seed)
    return [Item(f"id{i}", xb[i - start], {"n": i}, version) for i in range(start, stop)]


async def state_of(store: SQLiteStore) -> dict[str, Item]:
    return {item.id: item async for item in store.iter_items()}


def assert_index_matches(index: VectorIndex, state: dict[str, Item]) -> None:
    """Exact (Flat) search over the index equals brute force over the store's records."""
    ids = sorted(state)
    xb = np.stack([state[i].vector for i in ids])
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = clustered(20, D, seed=99)
    expected = [[ids[j] for j in row] for row in np.argsort(-(xq @ xb.T), axis=1)[:, :10]]
    assert [[h.id for h in row] for row in index.search(xq, 10).hits] == expected
    assert len(index) == len(state)
    assert all(index.metadata_of(i) == state[i].metadata for i in ids)


@pytest.fixture
async def store(tmp_path: Path):
    opened = await SQLiteStore.open(tmp_path / "face.sqlite3")
    yield opened
    await opened.close()


async def test_snapshot_then_catch_up_reaches_the_store_state(store: SQLiteStore, tmp_path: Path) -> None:
    index = VectorIndex(D, V)
    offset = await store.upsert(items(0, 300, seed=1))
    index.upsert_items(items(0, 300, seed=1), offset=offset)
    save_snapshot(index, tmp_path / "snap")
    # the service keeps writing after the snapshot, then restarts from it
    await store.upsert(items(250, 400, seed=2))
    for i in range(0, 300, 7):
        await store.delete(f"id{i}")
    await store.upsert(items(0, 5, seed=3))
    restored = load_snapshot(tmp_path / "snap", model_version=V)
    assert restored.offset == offset
    applied = await catch_up(restored, store, batch=50)
    assert applied == await store.last_offset() - offset and restored.offset == await store.last_offset()
    assert await catch_up(restored, store) == 0
    assert_index_matches(restored, await state_of(store))


async def test_rebuild_beside_with_racing_writes_then_swap(store: SQLiteStore) -> None:
    index = VectorIndex(D, V, factory="Flat")

    async def write(batch: list[Item]) -> None:  # the gateway's write path: store first, then index
        offset = await store.upsert(batch)
        index.upsert_items(batch, offset=offset)

    async def remove(item_id: str) -> None:
        if await store.delete(item_id):
            index.delete([item_id], offset=await store.last_offset())

    await write(items(0, 500, seed=4))
    assert index.delta_size == 500 and index.main_size == 0

    async def racing_writes() -> None:
        for n in range(20):
            await write(items(500 + 10 * n, 510 + 10 * n, seed=10 + n))
            await write(items(n, n + 1, seed=50 + n))  # overwrite an old id
            await remove(f"id{100 + n}")
            await asyncio.sleep(0)

    report, _ = await asyncio.gather(rebuild_from_store(index, store, factory="Flat", batch=64), racing_writes())
    assert report.count >= 500 and index.main_size == report.count
    # Usually some writes land while the build runs and are replayed into it (report.replayed > 0), but how
    # many depends on thread scheduling (0 was seen on a quiet CI machine), so only the outcome is asserted.
    assert 0 <= report.replayed <= await store.last_offset() - 500
    assert_index_matches(index, await state_of(store))
    assert index.offset == await store.last_offset()


async def test_rebuild_to_ivf_and_refusals(store: SQLiteStore) -> None:
    index = VectorIndex(D, V)
    offset = await store.upsert(items(0, 800, seed=5))
    index.upsert_items(items(0, 800, seed=5), offset=offset)
    report = await rebuild_from_store(index, store, factory="IVF{nlist},Flat", search_params="nprobe=64")
    assert (report.count, report.offset, index.main_size, index.delta_size) == (800, offset, 800, 0)
    assert index.factory == "IVF{nlist},Flat"
    assert_index_matches(index, await state_of(store))  # nprobe ≥ nlist: exhaustive

    await store.set_model_version("v4")  # a gallery damaged by hand (a crashed upgrade): two versions in it
    await store.upsert(items(800, 801, seed=6, version="v4"))
    with pytest.raises(ModelVersionError, match="v4"):
        await catch_up(index, store)
    with pytest.raises(ModelVersionError, match="v4"):
        await rebuild_from_store(index, store)
    index.begin_rebuild()  # a failed rebuild left no journal behind
    index.abort_rebuild()


async def test_a_trimmed_log_forces_a_rebuild_instead_of_a_silent_gap(store: SQLiteStore, tmp_path: Path) -> None:
    index = VectorIndex(D, V)
    offset = await store.upsert(items(0, 50, seed=7))
    index.upsert_items(items(0, 50, seed=7), offset=offset)
    save_snapshot(index, tmp_path / "snap")
    await store.upsert(items(40, 90, seed=8))
    await store.delete("id3")
    await store.trim_changes(await store.last_offset())  # a later snapshot let the log go
    restored = load_snapshot(tmp_path / "snap")
    with pytest.raises(ChangeLogTrimmed):
        await catch_up(restored, store)
    report = await sync_with_store(restored, store)
    assert isinstance(report, RebuildReport) and report.count == 89
    assert_index_matches(restored, await state_of(store))
    assert await sync_with_store(restored, store) == 0
