"""Snapshots: round trip gives equal results; corruption and version mismatches are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.index import ModelVersionError, SnapshotError, VectorIndex, read_sidecar
from service.index.snapshot import load_snapshot, save_snapshot
from tests.service.index.data import clustered, ids_for

V = "v7"


@pytest.fixture(scope="module")
def live() -> VectorIndex:
    xb = clustered(1500, 32, seed=4)
    ids = ids_for(1500)
    meta = [{"cam": i % 3} for i in range(1500)]
    index = VectorIndex.build(ids[:1200], xb[:1200], meta[:1200], model_version=V, factory="IVF{nlist},Flat",
                              search_params="nprobe=3", offset=41)
    index.upsert(ids[1200:], xb[1200:], meta[1200:], model_version=V, offset=50)
    index.upsert(ids[5], xb[1300], [{"cam": 9}], model_version=V, offset=51)  # overwrite a main copy
    index.delete(ids[10:40], offset=52)
    return index


def test_round_trip_gives_the_same_results(live: VectorIndex, tmp_path: Path) -> None:
    path = tmp_path / "face" / "index.snap"
    sidecar = save_snapshot(live, path)
    assert sidecar["model_version"] == V and sidecar["count"] == len(live) == 1470
    assert sidecar["offset"] == 52 and sidecar["factory"] == "IVF{nlist},Flat"
    assert sidecar["checksum"]["algorithm"] == "sha256" and len(sidecar["checksum"]["value"]) == 64
    assert sidecar["built_at"] is not None and read_sidecar(path) == sidecar
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.snap", "index.snap.json"]  # no temp left

    loaded = load_snapshot(path, model_version=V)
    assert (len(loaded), loaded.offset, loaded.search_params) == (len(live), 52, "nprobe=3")
    assert (loaded.main_size, loaded.delta_size, loaded.tombstones) == (live.main_size, live.delta_size,
                                                                        live.tombstones)
    xq = clustered(30, 32, seed=5)
    for kwargs in ({}, {"filter": {"cam": 1}}, {"min_score": 0.5}):
        a, b = live.search(xq, 10, **kwargs), loaded.search(xq, 10, **kwargs)
        assert a.hits == b.hits
        np.testing.assert_array_equal(a.D, b.D)
    # the loaded index keeps working: writes, overwrites, deletes
    loaded.upsert(ids_for(1500)[5], xq[0], model_version=V)
    assert loaded.search(xq[0], 1).hits[0][0].id == ids_for(1500)[5]
    assert loaded.delete(ids_for(1500)[100]) == 1


def test_empty_index_round_trip(tmp_path: Path) -> None:
    save_snapshot(VectorIndex(8, V), tmp_path / "empty")
    loaded = load_snapshot(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.dim == 8 and loaded.search(np.ones(8, np.float32)).hits == [[]]


def test_a_corrupted_snapshot_is_refused(live: VectorIndex, tmp_path: Path) -> None:
    path = tmp_path / "index.snap"
    save_snapshot(live, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="corrupted or partially written"):
        load_snapshot(path)


def test_a_truncated_snapshot_is_refused(live: VectorIndex, tmp_path: Path) -> None:
    path = tmp_path / "index.snap"
    save_snapshot(live, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SnapshotError, match="sha256"):
        load_snapshot(path)


def test_missing_sidecar_or_file_is_refused(live: VectorIndex, tmp_path: Path) -> None:
    path = tmp_path / "index.snap"
    with pytest.raises(SnapshotError, match="does not exist"):
        load_snapshot(path)
    save_snapshot(live, path)
    (tmp_path / "index.snap.json").unlink()
    with pytest.raises(SnapshotError, match="no sidecar"):
        load_snapshot(path)


def test_a_snapshot_of_another_model_version_is_refused(live: VectorIndex, tmp_path: Path) -> None:
    path = tmp_path / "index.snap"
    save_snapshot(live, path)
    with pytest.raises(ModelVersionError, match="holds model version 'v7', expected 'v8'"):
        load_snapshot(path, model_version="v8")


def test_resaving_replaces_atomically(live: VectorIndex, tmp_path: Path) -> None:
    path = tmp_path / "index.snap"
    save_snapshot(live, path)
    small = VectorIndex.build(["a"], np.ones((1, 32), np.float32), model_version=V)
    save_snapshot(small, path)
    assert json.loads((tmp_path / "index.snap.json").read_text())["count"] == 1
    assert len(load_snapshot(path)) == 1
