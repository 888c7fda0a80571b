"""Several gateway processes on one Milvus, all real processes: a Milvus Lite gRPC server (what a Milvus
cluster is to pymilvus), one redis-server (the shared gallery store and change log), two `ufo serve` replicas.

- Read-your-writes across replicas: a write acknowledged by one replica is found by the very next search on
  the other, no waiting. What guarantees it: the replica that takes a write applies it to the task's
  collection before it answers (store → change log → its follower's `sync_to(offset)`), and every search is
  made with consistency level Strong, which waits for every write Milvus acknowledged before the search began,
  whichever process made it. Deletes likewise.
- A model upgrade run on one replica is adopted by the other (its follower sees the alias name another
  version's collection), which keeps answering meanwhile, each answer's model version matching the collection
  it searched (an image searched for itself scores ≈ 1 only when query and collection are of one model).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.worker.conftest import RedisServer

from .conftest import LiveServer, start_server
from .milvus_server import MilvusServer, milvus_server  # noqa: F401 - the fixture

DIM = 128  # the face model's embedding dimension (api_repo)
POLL_S = 0.2  # the followers' round
CONVERGE_S = 90.0  # bound on every wait for the other replica (2 shared cores: generous)


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def top_ids(client: httpx.Client, seed: int, k: int = 3) -> list[str]:
    response = client.post("/v1/tasks/face/search", json={"embedding": unit(seed), "k": k})
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def enroll(client: httpx.Client, gallery: dict[str, int]) -> None:
    items = [{"id": item_id, "embedding": unit(seed)} for item_id, seed in gallery.items()]
    response = client.post("/v1/tasks/face/items", json={"items": items})
    assert response.status_code == 200, response.text


def model_version(client: httpx.Client) -> str:
    return client.get("/v1/tasks/face/model").json()["model_version"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def replica_settings(redis: RedisServer, milvus: MilvusServer, shared: Path) -> dict[str, str]:
    """Both replicas: the same store, Milvus server and data folder (kept images, as k8s gateways share it)."""
    return {"store_url": redis.url, "data_dir": str(shared), "index__engine": "milvus", "milvus__uri": milvus.uri,
            "index__poll_interval_s": str(POLL_S)}


@pytest.fixture
def replicas(api_repo: Path, tmp_path: Path, redis_server: RedisServer,
             milvus_server: MilvusServer) -> Iterator[tuple[LiveServer, LiveServer]]:  # noqa: F811
    repo = Path(shutil.copytree(api_repo, tmp_path / "repo"))  # private: the upgrade test adds a version
    settings = replica_settings(redis_server, milvus_server, tmp_path / "shared")
    servers: list[LiveServer] = []
    try:
        servers.append(start_server(repo, tmp_path / "a", **settings))
        servers.append(start_server(repo, tmp_path / "b", **settings))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.mark.timeout(300)
def test_writes_on_one_replica_are_found_on_the_other_at_once(replicas: tuple[LiveServer, LiveServer]) -> None:
    with replicas[0].client() as a, replicas[1].client() as b:
        gallery = {f"g{i}": 100 + i for i in range(40)}
        for start in range(0, 40, 10):  # enrolled on A, each batch searched on B right away
            batch = dict(list(gallery.items())[start:start + 10])
            enroll(a, batch)
            assert all(top_ids(b, seed, 1) == [item_id] for item_id, seed in batch.items())
        enroll(b, {"b0": 7777})  # the other way round
        assert top_ids(a, 7777, 1) == ["b0"]
        for item_id in ("g3", "g4", "b0"):  # deleted on one, gone on the other at once
            writer, reader = (a, b) if item_id != "b0" else (b, a)
            assert writer.delete(f"/v1/tasks/face/items/{item_id}").status_code == 204
            assert item_id not in top_ids(reader, gallery.get(item_id, 7777))
            assert reader.get(f"/v1/tasks/face/items/{item_id}").status_code == 404
        enroll(b, {"g7": 9999})  # overwritten on B: A finds the new vector, not the old one
        assert top_ids(a, 9999, 1) == ["g7"] and "g7" not in top_ids(a, 107)
        for client in (a, b):
            index = client.get("/v1/tasks/face/index").json()
            assert (index["size"], index["type"]) == (38, "milvus"), index
