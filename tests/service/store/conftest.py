"""Store fixtures: the same suite runs on SQLite (a temp file) and on a real redis-server."""

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

import pytest

from service.store import GalleryStore, SQLiteStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_redis(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not answer PING within {timeout_s} s")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port for the session, stopped by its PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not installed (apt-get install -y redis-server)")
    workdir: Path = tmp_path_factory.mktemp("redis")
    pidfile = workdir / "redis.pid"
    port = _free_port()
    subprocess.run(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "yes", "--pidfile", str(pidfile)],
        check=True, capture_output=True,
    )
    try:
        _wait_for_redis(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for _ in range(100):  # the daemon writes its pidfile shortly after forking
            if pidfile.exists() and pidfile.read_text().strip():
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
                break
            time.sleep(0.05)


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GalleryStore]:
    """An empty store of each backend (Redis: a fresh key prefix per test)."""
    if request.param == "sqlite":
        opened: GalleryStore = await SQLiteStore.open(tmp_path / "face.sqlite3")
    else:
        from service.store.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        opened = await RedisStore.open(url, f"test-{uuid.uuid4().hex[:12]}")
    try:
        yield opened
    finally:
        await opened.close()
