"""Worker fixtures: real redis-server processes with AOF on (restartable, killable), temp SQLite stores,
one FAISS thread (the tests share 2 cores)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import faiss
import pytest

from service.config import IndexSettings, WorkerSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server on a loopback port, AOF on (`appendfsync` as given), data in `workdir`.
    `kill()` sends SIGKILL (a crash: nothing flushed beyond what the fsync policy already did)."""

    def __init__(self, workdir: Path, appendfsync: str = "always"):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server binary not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.appendfsync = appendfsync
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", self.appendfsync, "--dir", str(self.workdir), "--logfile", str(self.workdir / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):  # -LOADING while the AOF is replayed
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} not ready within {timeout_s} s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the module (AOF on, appendfsync always)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh key namespace / task name per test (tests share the module's server)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def worker_settings(namespace: str) -> WorkerSettings:
    return WorkerSettings(namespace=namespace, claim_idle_s=1.0, heartbeat_s=0.25, block_s=0.2)


@pytest.fixture
def index_settings() -> IndexSettings:
    """Small thresholds so a few thousand items get an IVF index; fast follower rounds; no canary loop."""
    return IndexSettings(flat_below=1000, rebuild_delta_items=400, rebuild_tombstone_ratio=0.3, tune_queries=100,
                         poll_interval_s=0.1, min_rebuild_gap_s=0.5, canary_interval_s=0.0)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator:
    from service.store import SQLiteStore

    store = await SQLiteStore.open(tmp_path / "store" / "face.sqlite3")
    yield store
    await store.close()
