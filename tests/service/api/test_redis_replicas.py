"""Distributed mode end to end, all real processes: one redis-server (AOF on), two `ufo serve` replicas sharing
the Redis store and one data folder (the snapshot folder, as the k8s gateways share their data volume), and
one `ufo worker` consuming rebuild jobs.

Writes on one replica are searchable there when the request returns and reach the other replica by its
change-log follower; deletes hold across replicas; an admin rebuild is built by the worker, both replicas
adopt the same snapshot and then answer a fixed set of queries identically (ids and scores); writes, deletes
and overwrites made while the rebuild runs are all there afterwards; a restarted replica comes back with the
same gallery, version and answers. Startup with a bad or unreachable store URL fails with a message naming it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import redis

from model_store.triton import free_port
from service.api.auth import create_key
from service.worker.records import SnapshotInfo
from tests.service.worker.conftest import RedisServer

from .conftest import ROOT, LiveServer, server_env, start_server

T = TypeVar("T")

DIM = 128  # the face model's embedding dimension (api_repo)
N_ITEMS = 200
QUERIES = (1, 17, 123, 199)  # each has its exact match q<seed> in the gallery
PROBES = (9001, 9002, 9003)  # no exact match: a ranking of near-ties, the hardest to keep identical
DELETED_BEFORE = [f"g{i}" for i in range(5)]  # deleted on B before the rebuild
DELETED_DURING = [f"g{i}" for i in range(10, 20)]  # deleted (alternating replicas) while the rebuild runs
OVERWRITTEN_DURING = [f"g{i}" for i in range(20, 25)]  # given a new vector while the rebuild runs
POLL_S = 0.2  # the followers' catch-up period
CONVERGE_S = 60.0  # bound on every wait for another replica or the (niced) worker


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def hits(client: httpx.Client, seed: int, k: int = 5) -> list[tuple[str, float]]:
    response = client.post("/v1/tasks/face/search", json={"embedding": unit(seed), "k": k})
    assert response.status_code == 200, response.text
    return [(hit["id"], hit["score"]) for hit in response.json()["hits"]]


def top_ids(client: httpx.Client, seed: int, k: int = 5) -> list[str]:
    return [item_id for item_id, _ in hits(client, seed, k)]


def index_of(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/tasks/face/index")
    assert response.status_code == 200, response.text
    return response.json()


def enroll(client: httpx.Client, gallery: dict[str, int]) -> None:
    items = [{"id": item_id, "embedding": unit(seed)} for item_id, seed in gallery.items()]
    response = client.post("/v1/tasks/face/items", json={"items": items})
    assert response.status_code == 200, response.text


def wait_until(probe: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = CONVERGE_S) -> T:
    """Call `probe` until `done(value)` (a bounded wait for convergence, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s; last: {value}")
        time.sleep(0.1)


def start_worker(redis_url: str, data_dir: Path, log_path: Path) -> subprocess.Popen:
    """`ufo worker` as its own process, sharing the replicas' store and data folder."""
    env = server_env(ROOT / "unused-repository", log_path.parent, store_url=redis_url, data_dir=str(data_dir))
    with open(log_path, "ab") as log_file:
        return subprocess.Popen([sys.executable, "-m", "ufo_cli", "worker", "--consumer", "w1", "--faiss-threads", "1",
                                 "--heartbeat-s", "0.5"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)


class Writer:
    """In a thread, round after round, alternating replicas: enroll 3 new items, delete one item of `deletes`,
    overwrite one of `overwrites` with a new vector. Only acknowledged writes are recorded."""

    def __init__(self, urls: list[str], headers: dict[str, str], deletes: list[str], overwrites: list[str]):
        self.urls, self.headers = urls, headers
        self.deletes, self.overwrites = list(deletes), list(overwrites)
        self.written: dict[str, int] = {}  # id → seed of the vector it now holds
        self.deleted: list[str] = []
        self.failures: list[str] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients = [httpx.Client(base_url=url, headers=self.headers, timeout=30) for url in self.urls]
        try:
            while not self._stop.is_set() and self.rounds < 500:
                self._round(clients[self.rounds % len(clients)], self.rounds)
                self.rounds += 1
                time.sleep(0.03)  # leave the (niced) worker some of the 2 cores
        finally:
            for client in clients:
                client.close()

    def _round(self, client: httpx.Client, n: int) -> None:
        batch = {f"w{n}-{j}": 20_000 + 3 * n + j for j in range(3)}
        if self.overwrites:
            batch[self.overwrites[0]] = 30_000 + n
        try:
            enroll(client, batch)
        except (AssertionError, httpx.HTTPError) as exc:
            self.failures.append(f"enroll {sorted(batch)}: {exc}")
            return
        self.written.update(batch)
        if self.overwrites:
            self.overwrites.pop(0)
        if self.deletes:
            item_id = self.deletes[0]
            try:
                response = client.delete(f"/v1/tasks/face/items/{item_id}")
            except httpx.HTTPError as exc:
                self.failures.append(f"delete {item_id}: {exc!r}")
                return
            if response.status_code != 204:
                self.failures.append(f"delete {item_id}: {response.status_code} {response.text}")
                return
            self.deleted.append(self.deletes.pop(0))

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the writer thread did not stop"



def same_answers(a: httpx.Client, b: httpx.Client) -> dict[int, list[tuple[str, float]]]:
    """The fixed queries' top-10 (ids and scores) on `a`, asserted identical on `b`."""
    answers = {seed: hits(a, seed, 10) for seed in QUERIES + PROBES}
    assert {seed: hits(b, seed, 10) for seed in QUERIES + PROBES} == answers
    return answers


@pytest.mark.timeout(240)
def test_two_replicas_share_writes_deletes_and_rebuilt_snapshots(api_repo: Path, tmp_path: Path,
                                                                 redis_server: RedisServer) -> None:
    admin_key, admin_record = create_key(["admin"])
    headers = {"Authorization": f"Bearer {admin_key}"}
    shared = tmp_path / "shared"  # data_dir of both replicas and the worker: data_dir/snapshots is shared
    settings = {"store_url": redis_server.url, "data_dir": str(shared), "api_keys": f'["{admin_record.render()}"]',
                "index__poll_interval_s": str(POLL_S), "index__canary_interval_s": "0",
                "index__rebuild_tombstone_ratio": "0"}  # no automatic rebuild: only the one this test asks for
    servers: list[LiveServer] = []
    worker: subprocess.Popen | None = None
    worker_log = tmp_path / "worker" / "worker.log"
    worker_log.parent.mkdir()
    try:
        servers.append(start_server(api_repo, tmp_path / "a", **settings))
        servers.append(start_server(api_repo, tmp_path / "b", **settings))
        worker = start_worker(redis_server.url, shared, worker_log)
        a_server, b_server = servers
        a = a_server.client(headers=headers)
        b = b_server.client(headers=headers)
        gallery = {f"g{i}": 1000 + i for i in range(N_ITEMS)} | {f"q{s}": s for s in QUERIES}  # id → vector seed

        # 1. Enroll on A: searchable on A when each request returns; B converges.
        names = list(gallery)
        for start in range(0, len(names), 50):
            batch = {name: gallery[name] for name in names[start:start + 50]}
            enroll(a, batch)
            last = names[min(start + 50, len(names)) - 1]
            assert top_ids(a, gallery[last], 1) == [last]  # read-your-writes, no waiting
        assert index_of(a)["size"] == len(gallery)
        wait_until(lambda: index_of(b)["size"], lambda n: n == len(gallery), "B holds A's items")
        assert all(top_ids(b, s, 1) == [f"q{s}"] for s in QUERIES)
        assert b.get("/v1/tasks/face/items/g7").json()["id"] == "g7"
        enroll(b, {"b0": 7777})  # and the other way round
        gallery["b0"] = 7777
        assert top_ids(b, 7777, 1) == ["b0"]
        wait_until(lambda: top_ids(a, 7777, 1), lambda ids: ids == ["b0"], "A finds B's item")

        # 2. Delete on B: gone on B at once, on A once it caught up; tombstones hold across replicas.
        for item_id in DELETED_BEFORE:
            assert b.delete(f"/v1/tasks/face/items/{item_id}").status_code == 204
            assert item_id not in top_ids(b, gallery.pop(item_id))
        assert index_of(b)["size"] == len(gallery)
        wait_until(lambda: index_of(a)["size"], lambda n: n == len(gallery), "A applies B's deletes")
        for i, item_id in enumerate(DELETED_BEFORE):
            assert item_id not in top_ids(a, 1000 + i)
            assert a.get(f"/v1/tasks/face/items/{item_id}").status_code == 404
        assert a.delete(f"/v1/tasks/face/items/{DELETED_BEFORE[0]}").status_code == 404  # already gone via B

        before = index_of(a)
        assert before["version"] is None and before["rebuilds"] == 0 and before["type"] == "Flat"
        assert index_of(b)["version"] is None

        # 3 + 4. Rebuild (admin, on A) while a writer enrolls, deletes and overwrites on both replicas.
        with Writer([a_server.url, b_server.url], headers, DELETED_DURING, OVERWRITTEN_DURING) as writer:
            wait_until(lambda: writer.rounds, lambda n: n >= 2, "the writer's first rounds")
            queued = a.post("/v1/tasks/face/index/rebuild")
            assert queued.status_code == 200, queued.text
            job = queued.json()
            assert job["state"] in ("queued", "running") and job["reason"] == "request" and job["job_id"]
            rebuilt = wait_until(lambda: index_of(a), lambda i: (i["job"] or {}).get("job_id") == job["job_id"]
                                 and i["job"]["state"] in ("done", "failed") and i["rebuilds"] >= 1,
                                 "A adopts the worker's snapshot")
            assert rebuilt["job"]["state"] == "done", rebuilt["job"]
            version = rebuilt["version"]
            assert version and rebuilt["job"]["last_version"] == version
            wait_until(lambda: index_of(b)["version"], lambda v: v == version, "B adopts the same snapshot")
            adopted_at = writer.rounds
            wait_until(lambda: writer.rounds, lambda n: n >= max(len(DELETED_DURING) + 2, adopted_at + 2),
                       "the writer's deletes and a round after both swaps")
        assert writer.failures == []
        assert writer.deleted == DELETED_DURING and writer.overwrites == []
        for item_id in writer.deleted:
            gallery.pop(item_id)
        gallery.update(writer.written)

        with redis.Redis.from_url(redis_server.url) as r:
            latest_json = r.get("ufo:{jobs}:latest:face")  # what the worker announced
        assert latest_json is not None
        latest = SnapshotInfo.from_json(latest_json)
        assert latest.version == version and latest.factory == "Flat"
        assert latest.count > before["size"]  # the writes acknowledged before the request are in the snapshot
        assert latest.count < len(gallery)  # and some came after it: replayed from the log on both replicas
        print(f"snapshot {version}: {latest.count} items at offset {latest.offset}; after the writer: "
              f"{len(gallery)} items, {writer.rounds} writer rounds")

        # Both replicas caught up the same log on the same snapshot: same size, offset, version and answers.
        final_a, final_b = wait_until(lambda: (index_of(a), index_of(b)),
                                      lambda ab: ab[0]["offset"] == ab[1]["offset"] and ab[0]["size"] == len(gallery),
                                      "A and B at the end of the log")
        assert final_b["size"] == final_a["size"] == len(gallery)
        assert final_a["version"] == final_b["version"] == version and final_a["state"] == "ready"
        assert final_a["rebuilds"] == final_b["rebuilds"] == 1 and final_a["offset"] > latest.offset
        answers = same_answers(a, b)
        assert all(answers[s][0][0] == f"q{s}" for s in QUERIES)
        for client in (a, b):
            for item_id in (*writer.written, *OVERWRITTEN_DURING):
                assert top_ids(client, gallery[item_id], 1) == [item_id]
            for item_id in DELETED_DURING:
                assert item_id not in top_ids(client, 1000 + int(item_id[1:]), 10)
            for item_id in OVERWRITTEN_DURING:  # the old vector no longer finds it first
                assert top_ids(client, 1000 + int(item_id[1:]), 1) != [item_id]

        # 5. Restart B: same gallery, same snapshot version, same answers.
        assert b_server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a graceful shutdown
        assert "Application shutdown complete" in b_server.logs()
        b.close()
        servers[1] = b_server = start_server(api_repo, tmp_path / "b", **settings)
        b = b_server.client(headers=headers)
        restarted = wait_until(lambda: index_of(b),
                               lambda i: i["version"] == version and i["offset"] == final_a["offset"],
                               "restarted B serves the snapshot, caught up")
        assert restarted["size"] == len(gallery) and restarted["state"] == "ready"
        assert same_answers(a, b) == answers
        assert index_of(a)["offset"] == final_a["offset"]  # nothing written meanwhile: the comparison is fair
        a.close()
        b.close()
    finally:
        for server in servers:
            server.stop()
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        logs = [(s.url, s.logs()) for s in servers]
        if worker_log.exists():
            logs.append(("worker", worker_log.read_text(errors="replace")))
        for name, text in logs:
            print(f"--- {name} (tail) ---\n{text[-3000:]}")
    assert worker is not None and worker.returncode == 0, "ufo worker did not stop cleanly on SIGTERM"


@pytest.mark.parametrize(("store_url", "message"), [
    ("mysql://127.0.0.1/ufo", "UFO_STORE_URL='mysql://127.0.0.1/ufo' is not a supported store URL"),
    ("redis://127.0.0.1:{port}/0", "does not answer (ConnectionError: Error 111 connecting to 127.0.0.1:{port}"),
    ("redis://127.0.0.1:noport/0", "Port could not be cast to integer value as 'noport'"),
])
def test_bad_or_unreachable_store_url_fails_startup_naming_it(api_repo: Path, tmp_path: Path, store_url: str,
                                                             message: str) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RuntimeError, match="server exited with") as failed:
        start_server(api_repo, tmp_path, ready_timeout_s=60, store_url=store_url.format(port=port))
    logs = str(failed.value)
    assert message.format(port=port) in logs and "ufo serve: error: UFO_STORE_URL=" in logs
    assert "Traceback" not in logs  # one line saying what is wrong, before any model is loaded
