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
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store.triton import free_port
from tests.service.worker.conftest import RedisServer

from .conftest import ROOT, LiveServer, export_random_vit, server_env, start_server
from .milvus_server import MilvusServer, milvus_server  # noqa: F401 - the fixture
from .test_upgrade_route import N_PEOPLE, SelfSearches, enroll_images, wait_for_answers, wait_for_upgrade

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



def replica_settings(redis: RedisServer, milvus: MilvusServer, shared: Path) -> dict[str, str]:
    """Both replicas: the same store, Milvus server and data folder (kept images, as k8s gateways share it)."""
    return {"store_url": redis.url, "data_dir": str(shared), "index__engine": "milvus", "milvus__uri": milvus.uri,
            "index__poll_interval_s": str(POLL_S)}


@pytest.fixture
def repo(api_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the repository: the upgrade test adds a version."""
    return Path(shutil.copytree(api_repo, tmp_path / "repo"))


@pytest.fixture
def replicas(repo: Path, tmp_path: Path, redis_server: RedisServer,
             milvus_server: MilvusServer) -> Iterator[tuple[LiveServer, LiveServer]]:  # noqa: F811
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
            assert (index["size"], index["type"]) == (38, "milvus:FLAT"), index

        # A makes the collection again (admin rebuild) and moves the alias; B switches to it on its next round
        swaps = b.get("/v1/tasks/face/index").json()["rebuilds"]
        assert a.post("/v1/tasks/face/index/rebuild").json()["state"] == "running"
        deadline = time.monotonic() + CONVERGE_S
        while (a.get("/v1/tasks/face/index").json()["job"] or {}).get("state") != "done" or \
                b.get("/v1/tasks/face/index").json()["rebuilds"] == swaps:
            assert time.monotonic() < deadline, (a.get("/v1/tasks/face/index").json(), swaps)
            time.sleep(0.1)
        assert all(top_ids(b, seed, 1) == [item_id] for item_id, seed in gallery.items() if item_id not in
                   ("g3", "g4", "g7"))
        enroll(b, {"after": 4242})
        assert top_ids(a, 4242, 1) == ["after"] and b.get("/v1/tasks/face/index").json()["size"] == 39


def wait_for_version(client: httpx.Client, version: str) -> None:
    """Until the replica serves `version` (a bounded wait for its follower's adoption)."""
    deadline = time.monotonic() + CONVERGE_S
    while (serving := model_version(client)) != version:
        assert time.monotonic() < deadline, f"still serving {serving}, not {version}, after {CONVERGE_S} s"
        time.sleep(0.1)


def collection_ids(uri: str, version: str) -> set[str]:
    """The ids in the face collection of `version` (read with pymilvus, as an operator would)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri, timeout=10)
    try:
        name = next(n for n in client.list_collections() if n.startswith("ufo_face__")
                    and client.describe_collection(n)["properties"]["ufo.model_version"] == version)
        rows = client.query(name, filter='id != ""', output_fields=["id"], consistency_level="Strong")
        return {row["id"] for row in rows}
    finally:
        client.close()


@pytest.mark.timeout(400)
def test_an_upgrade_on_one_replica_is_adopted_by_the_other_with_no_mixed_answer(
        replicas: tuple[LiveServer, LiveServer], repo: Path, milvus_server: MilvusServer,  # noqa: F811
        faces: dict[str, list[bytes]]) -> None:
    a_server, b_server = replicas
    gallery = {person: images[0] for person, images in list(faces.items())[:N_PEOPLE]}
    later = {person: images[1] for person, images in list(faces.items())[N_PEOPLE:N_PEOPLE + 2]}
    with a_server.client() as a, b_server.client() as b:
        enroll_images(a, gallery)
        export_random_vit(repo, "face", "ufo_face", seed=7)  # version 2 appears in the (shared) repository
        with SelfSearches(b_server, gallery) as load:  # B answers throughout: before, during, after adoption
            wait_for_answers(load)
            started = a.post("/v1/tasks/face/model/upgrade", json={})
            assert started.status_code == 202, started.text
            upgrade = wait_for_upgrade(a)
            assert upgrade["state"] == "done" and upgrade["from"] == "ufo_face/1", upgrade
            enroll_images(a, later)  # a v2 record: never written into B's v1 collection
            wait_for_version(b, "ufo_face/2")
            wait_for_answers(load, len(load.answers) + len(gallery))  # some after B's adoption
        assert not load.failures, load.failures[:3]
        assert load.versions() == {"ufo_face/1", "ufo_face/2"}
        assert all(top == query and score > 0.99 for query, top, score, _ in load.answers)  # never a mix
        for client in (a, b):  # both serve v2 from the v2 collection, later writes included
            assert model_version(client) == "ufo_face/2"
            assert client.get("/v1/tasks/face/index").json()["size"] == N_PEOPLE + len(later)
        enroll(b, {"b2": 4242})  # B writes v2 records now (the store's fence allows them), A finds them
        assert top_ids(a, 4242, 1) == ["b2"]
    assert set(later).isdisjoint(collection_ids(milvus_server.uri, "ufo_face/1"))
    assert set(later) | {"b2"} <= collection_ids(milvus_server.uri, "ufo_face/2")


def serve_command(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "ufo_cli", "serve", "--port", str(port), "--no-access-log", *flags]


def search_counts(url: str, scrapes: int = 12) -> set[int]:
    """The face searches answered, as /metrics counts them, over fresh connections: each worker process
    counts its own, so two different values mean two processes answered."""
    counts = set()
    for _ in range(scrapes):
        text = httpx.get(f"{url}/metrics", timeout=30).text
        counts.add(int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("ufo_http_requests_total") and "search" in line
                           and 'task="face"' in line and 'status="200"' in line)))
    return counts


def worker_children(pid: int) -> list[int]:
    """The uvicorn worker processes under `pid` (spawned by multiprocessing)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.timeout(300)
def test_serve_with_two_workers_on_a_milvus_server(api_repo: Path, tmp_path: Path,
                                                    milvus_server: MilvusServer) -> None:  # noqa: F811
    # up: a worker accepts connections only once its lifespan opened the tasks
    server = start_server(api_repo, tmp_path, flags=("--workers", "2"), ready_timeout_s=180, index__engine="milvus",
                          milvus__uri=milvus_server.uri)
    url = server.url
    try:
        assert len(worker_children(server.process.pid)) == 2
        with httpx.Client(base_url=url, timeout=60) as client:
            enroll(client, {f"w{i}": 500 + i for i in range(20)})
        answered = 0

        def search(i: int) -> list[str]:
            with httpx.Client(base_url=url, timeout=60) as fresh:  # a new connection: any worker may take it
                return top_ids(fresh, 500 + i % 20, 1)

        for _ in range(20):  # rounds of concurrent searches until /metrics shows both processes answered
            with ThreadPoolExecutor(8) as pool:
                tops = list(pool.map(search, range(16)))
            assert tops == [[f"w{i % 20}"] for i in range(16)]  # every worker finds every item
            answered += 16
            counts = search_counts(url)
            if len(counts) == 2 and sum(counts) == answered and min(counts) > 0:
                break
        assert len(counts) == 2 and sum(counts) == answered, (counts, answered)
    finally:
        server.stop(60)


@pytest.mark.parametrize(("settings", "why"), [
    ({}, "the faiss engine keeps each task's index and its rebuild jobs inside one process"),
    ({"index__engine": "milvus", "milvus__uri": "var/x/index.db"}, "a Lite file is opened by one process only"),
])
def test_serve_with_workers_refused_where_each_process_would_hold_the_index(
        api_repo: Path, tmp_path: Path, settings: dict[str, str], why: str) -> None:
    env = server_env(api_repo, tmp_path, **settings)
    result = subprocess.run(serve_command(free_port(), "--workers", "2"), env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert why in result.stderr and "--workers 2 needs" in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ufo serve: error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr  # one line, no traceback
