"""The Triton backend against a REAL tritonserver (bundled in nvidia-pytriton) serving an exported repository."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import model_store.triton as triton_launcher
from model_store.triton import TritonServer, free_port
from service.inference.embedded import EmbeddedBackend
from service.inference.errors import BackendUnavailable
from service.inference.triton import ModelNotReady, TritonBackend

from .conftest import DIM, MAX_BATCH, random_pixels

PROTOCOLS = ["grpc", "http"]


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[TritonServer]:
    # product_tiny is left unloaded: a backend with load_models=True must ask for it.
    with TritonServer(repo, load_models=["face_tiny", "person_tiny"], ready_timeout_s=120) as running:
        yield running


def url_of(server: TritonServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


async def embedded_embeddings(repo: Path, task: str, pixels: np.ndarray) -> np.ndarray:
    async with EmbeddedBackend(repo, tasks=[task]) as backend:
        return await backend.embed(task, pixels)


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_equals_embedded_and_splits_to_max_batch(server: TritonServer, repo: Path, protocol: str) -> None:
    pixels = random_pixels(2 * MAX_BATCH + 3, seed=11)  # 3 calls at the model's max_batch_size
    async with TritonBackend(repo, url_of(server, protocol), protocol=protocol, tasks=["face", "person"]) as backend:
        assert await backend.health()
        assert backend.max_batch_size == MAX_BATCH
        assert backend.models()["face"].embedding_dim == DIM
        for task in ("face", "person"):
            actual = await backend.embed(task, pixels)
            np.testing.assert_allclose(actual, await embedded_embeddings(repo, task, pixels), atol=1e-5)


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_concurrent_requests(server: TritonServer, repo: Path, protocol: str) -> None:
    requests = [random_pixels(1 + i % 3, seed=100 + i) for i in range(16)]
    async with TritonBackend(repo, url_of(server, protocol), protocol=protocol, tasks=["face"]) as backend:
        results = await asyncio.gather(*(backend.embed("face", p) for p in requests))
    expected = await embedded_embeddings(repo, "face", np.concatenate(requests))
    np.testing.assert_allclose(np.concatenate(results), expected, atol=1e-5)


@pytest.mark.anyio
async def test_unloaded_model_is_unavailable_unless_loading_is_allowed(server: TritonServer, repo: Path) -> None:
    pixels = random_pixels(2, seed=3)
    async with TritonBackend(repo, server.grpc_url, tasks=["product"], timeout_s=5) as backend:
        assert not await backend.health()
        with pytest.raises(ModelNotReady, match="product_tiny/1 is not ready"):
            await backend.embed("product", pixels)
    expected = await embedded_embeddings(repo, "product", pixels)
    async with TritonBackend(repo, server.grpc_url, tasks=["product"], load_models=True, timeout_s=60) as backend:
        assert await backend.health()
        np.testing.assert_allclose(await backend.embed("product", pixels), expected, atol=1e-5)
        await asyncio.to_thread(server.unload_model, "product_tiny")  # e.g. an operator, or a server restart
        assert not await backend.health()
        np.testing.assert_allclose(await backend.embed("product", pixels), expected, atol=1e-5)  # loaded again
        assert await backend.health()


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_server_fails_fast_and_typed(repo: Path, protocol: str) -> None:
    url = f"127.0.0.1:{free_port()}"  # nothing listens here
    backend = TritonBackend(repo, url, protocol=protocol, tasks=["face"], timeout_s=2, retries=2, backoff_s=0.05)
    started = time.monotonic()
    async with backend:  # starting against a dead server logs and carries on: the server may come later
        assert not await backend.health()
        with pytest.raises(BackendUnavailable, match="cannot reach|unavailable") as info:
            await backend.embed("face", random_pixels(1, seed=0))
    assert info.value.retry_after_s >= 1.0
    assert time.monotonic() - started < 3 * 2 + 1, "must give up within (retries + 1) x timeout"
    strict = TritonBackend(repo, url, protocol=protocol, tasks=["face"], timeout_s=1, retries=0, require_ready=True)
    with pytest.raises(BackendUnavailable):
        await strict.start()
    await strict.close()


@pytest.mark.anyio
async def test_server_outage_and_recovery(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = random_pixels(3, seed=5)
    expected = await embedded_embeddings(repo, "face", pixels)
    own_repo = tmp_path / "repo"
    for name in ("face_tiny", "product_tiny"):
        shutil.copytree(repo / name, own_repo / name)
    (own_repo / "product_tiny" / "config.pbtxt").write_text("max_batch_size: -3\n")  # the server cannot load it
    server = TritonServer(own_repo, load_models=["face_tiny"], ready_timeout_s=120)
    backends = {p: TritonBackend(own_repo, "", protocol=p, tasks=["face"], timeout_s=2, retries=2, backoff_s=0.05)
                for p in PROTOCOLS}
    try:
        server.start()
        broken = TritonBackend(own_repo, server.grpc_url, tasks=["product"], load_models=True, require_ready=True)
        with pytest.raises(ModelNotReady, match="product_tiny"):
            await broken.start()
        await broken.close()
        for protocol, backend in backends.items():
            backend.url = url_of(server, protocol)
            await backend.start()
            np.testing.assert_allclose(await backend.embed("face", pixels), expected, atol=1e-5)
        ports = server.ports
        server.stop()
        for backend in backends.values():
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await backend.embed("face", pixels)
            assert time.monotonic() - started < 3 * 2 + 1
            assert not await backend.health()
        # The server comes back on the same address (a restarted pod behind one service name).
        monkeypatch.setattr(triton_launcher, "free_ports", lambda address="127.0.0.1": ports)
        server.start()
        for backend in backends.values():
            np.testing.assert_allclose(await embed_when_back(backend, pixels), expected, atol=1e-5)
            assert await backend.health()
    finally:
        for backend in backends.values():
            await backend.close()
        server.stop()


async def embed_when_back(backend: TritonBackend, pixels: np.ndarray, within_s: float = 10.0) -> np.ndarray:
    """The same backend object reconnects by itself; allow the channel's reconnect backoff (≤ 1 s)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await backend.embed("face", pixels)
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
