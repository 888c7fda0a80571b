"""The rebuild job: index type by size, tuned operating point vs exact search, versioned snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.config import IndexSettings
from service.index import ModelVersionError, exact_knn, recall_at_k, suggest_nlist, verify_snapshot
from service.index.snapshot import load_snapshot
from service.store import Item, SQLiteStore
from service.worker.rebuild import NothingToBuild, choose_factory, fill_factory, run_rebuild
from service.worker.records import Job, SnapshotInfo
from service.worker.snapshots import SnapshotStore
from tests.service.index.data import clustered

pytestmark = pytest.mark.anyio

V = "face-model/1"
D = 32


def items(n: int, seed: int = 1, version: str = V, start: int = 0) -> list[Item]:
    xb = clustered(n, D, seed=seed)
    return [Item(f"id{start + i}", xb[i], {"n": start + i}, version) for i in range(n)]


def test_choose_factory_by_size() -> None:
    opts = IndexSettings(flat_below=1000, compressed_above=100_000, ann_factory="IVF{nlist},Flat",
                         compressed_factory="IVF{nlist},PQ{pq}x4fs,RFlat")
    assert choose_factory(999, 64, opts) == "Flat"
    assert choose_factory(5000, 64, opts) == f"IVF{suggest_nlist(5000)},Flat"
    assert choose_factory(200_000, 64, opts) == f"IVF{suggest_nlist(200_000)},PQ16x4fs,RFlat"
    assert fill_factory("HNSW32", 10**6, 256) == "HNSW32"
    assert fill_factory("PQ{pq}", 10, 30) == "PQ30"  # 30 is not a multiple of 4: one dimension each


async def test_rebuild_builds_tunes_and_snapshots(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    await sqlite_store.upsert(items(3000))
    await sqlite_store.delete("id7")
    opts = IndexSettings(flat_below=1000, recall_target=0.95, tune_queries=200)
    snapshots = SnapshotStore(tmp_path / "snapshots")
    info = await run_rebuild(Job("face", "request"), sqlite_store, snapshots, opts)

    assert info.factory.startswith("IVF") and info.search_params.startswith("nprobe=")
    assert info.count == 2999 and info.offset == await sqlite_store.last_offset() and info.model_version == V
    assert info.recall is not None and info.recall >= 0.95
    path = Path(info.path)
    assert path == snapshots.data_path("face", info.version) and path.parent.parent == tmp_path / "snapshots" / "face"
    sidecar = verify_snapshot(path)  # checksum still valid after the worker's fields were added
    assert sidecar["recall"] == info.recall and sidecar["job_id"] == info.job_id
    assert sidecar["offset"] == info.offset and sidecar["checksum"]["value"] == info.checksum
    assert sidecar["build_seconds"] >= sidecar["faiss_seconds"] > 0
    assert snapshots.read_latest("face") is None  # written, not announced yet

    # the recorded recall holds on fresh held-out queries against brute force
    index = load_snapshot(path, model_version=V)
    assert index.search_params == info.search_params and "id7" not in index
    state = {item.id: item.vector async for item in sqlite_store.iter_items()}
    ids = sorted(state)
    xb = np.stack([state[i] for i in ids])
    xq = clustered(100, D, seed=99)
    _, gt = exact_knn(xq, xb / np.linalg.norm(xb, axis=1, keepdims=True), 10)
    found = index.search(xq, 10).I
    positions = np.vectorize({item_id: j for j, item_id in enumerate(ids)}.get)(found)
    assert recall_at_k(positions, gt, 10) >= 0.9


async def test_flat_below_threshold_is_exact(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    await sqlite_store.upsert(items(500))
    opts = IndexSettings(flat_below=1000)
    info = await run_rebuild(Job("face", "delta"), sqlite_store, SnapshotStore(tmp_path), opts)
    assert info.factory == "Flat" and info.search_params == "" and info.recall == 1.0


async def test_refuses_two_model_versions(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    await sqlite_store.upsert(items(50))
    await sqlite_store.set_model_version("face-model/2")  # a gallery damaged by hand: two versions in it
    await sqlite_store.upsert(items(5, version="face-model/2", start=50))
    with pytest.raises(ModelVersionError):
        await run_rebuild(Job("face", "request"), sqlite_store, SnapshotStore(tmp_path), IndexSettings())
    with pytest.raises(ModelVersionError):  # a job for a version the store does not hold
        await run_rebuild(Job("face", "request", model_version="other/3"), sqlite_store, SnapshotStore(tmp_path),
                          IndexSettings())


async def test_empty_gallery_without_history_is_nothing_to_build(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    with pytest.raises(NothingToBuild):
        await run_rebuild(Job("face", "schedule"), sqlite_store, SnapshotStore(tmp_path), IndexSettings())


def test_latest_pointer_and_pruning(tmp_path: Path) -> None:
    snapshots = SnapshotStore(tmp_path)
    for version in ("20260101T000000000-o1", "20260102T000000000-o2", "20260103T000000000-o3",
                    "20260104T000000000-o4"):
        snapshots.data_path("face", version).parent.mkdir(parents=True)
    info = SnapshotInfo("face", "20260101T000000000-o1", "p", V, D, 1, 1, "Flat", "", None, 10, "x", 1.0, 1.0, 0.5)
    snapshots.write_latest(info)  # pretend the oldest is the latest: pruning must spare it
    assert json.loads((tmp_path / "face" / "latest.json").read_text())["version"] == info.version
    assert snapshots.prune("face", keep=2) == ["20260102T000000000-o2"]
    assert snapshots.versions("face") == ["20260101T000000000-o1", "20260103T000000000-o3", "20260104T000000000-o4"]
    assert snapshots.read_latest("face") == info and snapshots.read_latest("person") is None
