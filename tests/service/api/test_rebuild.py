"""Background rebuilds through the gateway (a real uvicorn server): POST /index/rebuild queues the job, searches
keep answering meanwhile with the same top-k, GET /index shows the job finish and the new snapshot version,
and /metrics counts the rebuild."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.api.auth import create_key

from .conftest import start_server

DIM = 128
N_ITEMS = 300
QUERIES = (1, 17, 123, 250)


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def top_k(client: httpx.Client, seed: int, headers: dict[str, str]) -> list[str]:
    response = client.post("/v1/tasks/face/search", json={"embedding": unit(seed), "k": 5}, headers=headers)
    response.raise_for_status()
    return [hit["id"] for hit in response.json()["hits"]]


class SearchLoad:
    """Searches in a thread until stopped; records each answer's top-k and every failure."""

    def __init__(self, url: str, headers: dict[str, str]):
        self.url, self.headers = url, headers
        self.answers: list[tuple[int, list[str]]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                seed = QUERIES[i % len(QUERIES)]
                try:
                    self.answers.append((seed, top_k(client, seed, self.headers)))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                i += 1

    def __enter__(self) -> SearchLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def wait_for_job(client: httpx.Client, headers: dict[str, str], job_id: str, timeout_s: float = 20.0) -> dict:
    """GET /index until the job is done and its snapshot is serving."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        index = client.get("/v1/tasks/face/index", headers=headers).json()
        job = index.get("job") or {}
        if job.get("job_id") == job_id and job.get("state") in ("done", "failed") and index["rebuilds"] >= 1:
            return index
        time.sleep(0.1)
    raise AssertionError(f"rebuild job {job_id} not done after {timeout_s} s: {index}")


def wait_for_metric(client: httpx.Client, line: str, timeout_s: float = 10.0) -> bool:
    """True once /metrics shows `line`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if line in client.get("/metrics").text:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.timeout(60)
def test_rebuild_in_background_keeps_search_answering(api_repo: Path, tmp_path: Path) -> None:
    admin_key, admin_record = create_key(["admin"])
    server = start_server(api_repo, tmp_path, api_keys=f'["{admin_record.render()}"]', index__poll_interval_s="0.2",
                          index__canary_interval_s="0.5")
    headers = {"Authorization": f"Bearer {admin_key}"}
    try:
        with server.client() as client:
            items = [{"id": f"g{i}", "embedding": unit(1000 + i)} for i in range(N_ITEMS)]
            items += [{"id": f"q{s}", "embedding": unit(s)} for s in QUERIES]  # each query's exact match
            for start in range(0, len(items), 50):
                enrolled = client.post("/v1/tasks/face/items", json={"items": items[start:start + 50]}, headers=headers)
                assert enrolled.status_code == 200, enrolled.text
            before = {seed: top_k(client, seed, headers) for seed in QUERIES}
            assert all(before[seed][0] == f"q{seed}" for seed in QUERIES)
            first = client.get("/v1/tasks/face/index", headers=headers).json()
            assert first["size"] == N_ITEMS + len(QUERIES) and first["version"] is None and first["rebuilds"] == 0

            with SearchLoad(server.url, headers) as load:
                queued = client.post("/v1/tasks/face/index/rebuild", headers=headers)
                assert queued.status_code == 200, queued.text
                job = queued.json()
                assert job["state"] in ("queued", "running") and job["reason"] == "request"
                index = wait_for_job(client, headers, job["job_id"])
                time.sleep(0.3)  # a few searches after the swap too

            assert load.failures == [] and len(load.answers) > 5
            assert all(hits == before[seed] for seed, hits in load.answers)
            assert index["job"]["state"] == "done" and index["version"] and index["state"] == "ready"
            assert index["size"] == N_ITEMS + len(QUERIES) and index["type"] == "Flat"
            assert index["last_build_at"] and index["last_rebuild_seconds"] is not None
            assert {seed: top_k(client, seed, headers) for seed in QUERIES} == before
            metrics = client.get("/metrics").text
            assert 'ufo_index_rebuilds_total{task="face"} 1.0' in metrics
            assert wait_for_metric(client, 'ufo_index_recall_at_k{k="10",task="face"} 1.0')  # the canary, exact
            refused = client.post("/v1/tasks/face/index/rebuild")
            assert refused.status_code == 401
    finally:
        server.stop()
