"""Client-side spreading over TWO real tritonservers: the backend keeps one client per endpoint and sends its
calls round-robin, so both servers' own statistics count inferences; a dead endpoint costs a retry, not a
failed call. Endpoint parsing and DNS resolution (a name resolving to its addresses) are checked too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from model_store.triton import TritonServer, free_port
from service.inference.endpoints import EndpointPool, resolve, split_endpoints
from service.inference.triton import TritonBackend

from .conftest import random_pixels

pytestmark = pytest.mark.anyio
CALLS = 20


@pytest.fixture(scope="module")
def servers(repo: Path) -> Iterator[list[TritonServer]]:
    started: list[TritonServer] = []
    try:
        for _ in range(2):
            started.append(TritonServer(repo, load_models=["face_tiny"], ready_timeout_s=120).start())
        yield started
    finally:
        for server in started:
            server.stop()


def inference_count(server: TritonServer) -> int:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics("face_tiny")
    finally:
        client.close()
    return sum(int(model.get("inference_count", 0)) for model in stats["model_stats"])


@pytest.mark.timeout(300)
async def test_calls_are_spread_across_both_servers(servers: list[TritonServer], repo: Path) -> None:
    before = [inference_count(s) for s in servers]
    url = ",".join(s.grpc_url for s in servers)
    async with TritonBackend(repo, url, tasks=["face"]) as backend:
        expected = None
        for _ in range(CALLS):
            out = await backend.embed("face", random_pixels(1, seed=7))
            expected = out if expected is None else expected
            np.testing.assert_allclose(out, expected, atol=1e-5)  # same model on both: same answer
        assert await backend.health()
    counts = [inference_count(s) - b for s, b in zip(servers, before, strict=True)]
    assert sum(counts) == CALLS, counts
    assert min(counts) >= CALLS // 2 - 1, f"round-robin should split {CALLS} calls evenly, got {counts}"


@pytest.mark.timeout(300)
async def test_a_dead_endpoint_costs_a_retry_not_a_failed_call(servers: list[TritonServer], repo: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    url = f"{servers[0].grpc_url},{dead}"
    async with TritonBackend(repo, url, tasks=["face"], retries=2, backoff_s=0.01, timeout_s=5) as backend:
        for _ in range(6):
            assert (await backend.embed("face", random_pixels(2, seed=3))).shape[0] == 2
        assert await backend.health()  # one ready endpoint is enough


async def test_endpoints_parse_and_resolve() -> None:
    assert split_endpoints("triton:8001, 10.0.0.2:8001") == [("triton", 8001), ("10.0.0.2", 8001)]
    assert split_endpoints("[::1]:8001") == [("::1", 8001)]
    for bad in ("triton", "triton:", ":8001", "a:8001,b", "triton:80x"):
        with pytest.raises(ValueError, match="is not host:port"):
            split_endpoints(bad)
    assert "127.0.0.1:8001" in await resolve("localhost", 8001)  # a real resolver answer
    closed: list[str] = []

    async def close(client: str) -> None:
        closed.append(client)

    pool: EndpointPool[str] = EndpointPool("localhost:9,127.0.0.1:9", lambda e: f"client-{e}", close, refresh_s=0)
    await pool.refresh()
    assert pool.all() == ["client-127.0.0.1:9"]  # one address, however many names reach it
    assert [pool.next() for _ in range(2)] == ["client-127.0.0.1:9"] * 2
    await pool.close()
    assert closed == ["client-127.0.0.1:9"]
    with pytest.raises(LookupError):
        pool.next()
