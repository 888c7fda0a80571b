"""Store outages under a real `ufo serve` gateway: every request that needs the store answers 503 + Retry-After
(507 when the store is full), never 500; /readyz follows the store; nothing acknowledged is lost.

Redis: a real redis-server (AOF on, appendfsync always) killed with SIGKILL and restarted while client threads
search and enroll. SQLite: a write lock held by another process (SQLITE_BUSY → 503) and a size cap reached
(`?max_pages=`: SQLite's own SQLITE_FULL, as on a full disk → 507), the file checked intact afterwards.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.api.conftest import LiveServer, api_repo, start_server  # noqa: F401 - api_repo: fixture
from tests.service.worker.conftest import RedisServer

DIM = 128  # the face model's embedding dimension (api_repo)
WAIT_S = 60.0  # bound on waits for recovery (not a timing assertion)


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def enroll(client: httpx.Client, item_id: str, seed: int) -> httpx.Response:
    return client.post("/v1/tasks/face/items", json={"id": item_id, "embedding": unit(seed)})


def top_id(client: httpx.Client, seed: int) -> str:
    response = client.post("/v1/tasks/face/search", json={"embedding": unit(seed), "k": 1})
    assert response.status_code == 200, response.text
    return response.json()["hits"][0]["id"]


def assert_store_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    assert "store" in response.json()["detail"]


def wait_ready(client: httpx.Client, ready: bool) -> None:
    deadline = time.monotonic() + WAIT_S
    while client.get("/readyz").json()["ready"] is not ready:
        assert time.monotonic() < deadline, f"/readyz never became ready={ready}"
        threading.Event().wait(0.1)


class Load:
    """Client threads searching and enrolling until stopped; every status is counted, acknowledged ids kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.statuses: dict[str, Counter[int]] = {"search": Counter(), "enroll": Counter()}
        self.acknowledged: dict[str, int] = {}  # id → seed, for every enroll answered 200
        self.refused_without_retry_after = 0
        self.threads = [threading.Thread(target=self.searches), threading.Thread(target=self.writes)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def searches(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            seed = 0
            while not self.stop.is_set():
                seed += 1
                response = client.post("/v1/tasks/face/search", json={"embedding": unit(seed % 50), "k": 3})
                self.statuses["search"][response.status_code] += 1

    def writes(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            seed = 10_000
            while not self.stop.is_set():
                seed += 1
                response = enroll(client, f"w{seed}", seed)
                self.statuses["enroll"][response.status_code] += 1
                if response.status_code == 200:
                    self.acknowledged[f"w{seed}"] = seed
                elif "Retry-After" not in response.headers:
                    self.refused_without_retry_after += 1
                self.stop.wait(0.02)


@pytest.mark.timeout(240)
def test_redis_killed_and_restarted_under_a_gateway(api_repo: Path, tmp_path: Path) -> None:  # noqa: F811
    redis = RedisServer(tmp_path / "redis").start()
    server: LiveServer | None = None
    try:
        server = start_server(api_repo, tmp_path / "gw", store_url=redis.url, index__poll_interval_s="0.2",
                              index__canary_interval_s="0", auto_upgrade="false")
        client = server.client()
        for seed in range(20):
            assert enroll(client, f"g{seed}", seed).status_code == 200
        assert client.get("/readyz").status_code == 200
        with Load(server.url) as load:
            threading.Event().wait(1.0)  # some acknowledged writes before the outage
            redis.kill()  # SIGKILL: what the AOF already holds is all that survives
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["stores"]["face"] != "ok", ready.text
            assert_store_problem(enroll(client, "during", 1), 503)
            assert_store_problem(client.get("/v1/tasks/face/items/g1"), 503)
            assert_store_problem(client.delete("/v1/tasks/face/items/g2"), 503)
            assert top_id(client, 3) == "g3"  # searches answer from the in-memory index
            threading.Event().wait(1.0)  # the load meets the outage
            redis.start()  # same port and folder: the AOF is replayed
            wait_ready(client, True)
            threading.Event().wait(1.0)  # and writes succeed again
        assert 500 not in load.statuses["enroll"] and 500 not in load.statuses["search"], load.statuses
        assert set(load.statuses["search"]) == {200}, load.statuses
        assert load.statuses["enroll"][503] > 0 and load.refused_without_retry_after == 0, load.statuses
        assert set(load.statuses["enroll"]) <= {200, 503}, load.statuses
        for item_id, seed in {**{f"g{s}": s for s in range(20)}, **load.acknowledged}.items():
            assert client.get(f"/v1/tasks/face/items/{item_id}").status_code == 200, f"acknowledged {item_id} lost"
            assert top_id(client, seed) == item_id
        assert enroll(client, "after", 99).status_code == 200
    finally:
        if server is not None:
            server.stop()
        redis.kill()


def hold_write_lock(db: Path) -> sqlite3.Connection:
    """Another process's writer, as an operator's sqlite3 shell or a backup tool would hold it."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


@pytest.mark.timeout(180)
def test_sqlite_locked_answers_503_then_recovers(api_repo: Path, tmp_path: Path) -> None:  # noqa: F811
    store = tmp_path / "store"
    server = start_server(api_repo, tmp_path / "gw", store_url=f"sqlite:///{store}?busy_timeout_ms=200",
                          auto_upgrade="false")
    try:
        client = server.client()
        assert enroll(client, "before", 1).status_code == 200
        lock = hold_write_lock(store / "face.sqlite3")
        try:
            assert_store_problem(enroll(client, "locked", 2), 503)
            assert top_id(client, 1) == "before"
        finally:
            lock.rollback()
            lock.close()
        assert enroll(client, "locked", 2).status_code == 200
        assert top_id(client, 2) == "locked"
    finally:
        server.stop()


@pytest.mark.timeout(180)
def test_sqlite_full_answers_507_and_keeps_the_store_whole(api_repo: Path, tmp_path: Path) -> None:  # noqa: F811
    store = tmp_path / "store"
    server = start_server(api_repo, tmp_path / "gw", store_url=f"sqlite:///{store}?max_pages=40",
                          auto_upgrade="false", keep_images="false")
    acknowledged: dict[str, int] = {}
    try:
        client = server.client()
        for seed in range(1000):  # each record and its change-log copy take ~1 KiB: full within ~100
            batch = [{"id": f"b{seed}-{k}", "embedding": unit(seed * 10 + k)} for k in range(5)]
            response = client.post("/v1/tasks/face/items", json={"items": batch})
            if response.status_code != 200:
                break
            acknowledged.update({item["id"]: seed * 10 + k for k, item in enumerate(batch)})
        assert_store_problem(response, 507)
        assert response.json()["type"] == "urn:ufo:problem:insufficient-storage"
        assert acknowledged, "the cap left no room for a single batch"
        refused = [item["id"] for item in batch]
        for item_id in refused:  # all of the refused batch or nothing: here nothing
            assert client.get(f"/v1/tasks/face/items/{item_id}").status_code == 404
        for item_id, seed in acknowledged.items():
            assert top_id(client, seed) == item_id
    finally:
        server.stop()
    with sqlite3.connect(store / "face.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == len(acknowledged)
        assert not conn.execute("SELECT 1 FROM items WHERE id = ?", (refused[0],)).fetchone()
