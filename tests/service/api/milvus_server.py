"""A Milvus Lite gRPC server as its own process: what several gateway processes reach like a Milvus cluster.

`python -m milvus_lite server --data-dir D --host 127.0.0.1 --port P` serves the same gRPC API as a Milvus
server (pymilvus talks to it over `http://127.0.0.1:P`), so two `ufo serve` replicas or `--workers 2` share
its collections and aliases; a Lite *file* URI, by contrast, is opened by one process only.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_store.triton import free_port


class MilvusServer:
    """One Milvus Lite server on a free loopback port, data in `workdir` (start, stop)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "milvus-server.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> MilvusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.workdir / "data"),
                 "--host", "127.0.0.1", "--port", str(self.port)], stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"milvus_lite server exited with {self.process.returncode}: {self.logs()[-2000:]}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"milvus_lite server not up within {timeout_s} s: {self.logs()[-2000:]}")

    def _answers(self) -> bool:
        """The port accepts connections and pymilvus can list collections."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            from pymilvus import MilvusClient

            client = MilvusClient(self.uri, timeout=5)
            try:
                client.list_collections()
            finally:
                client.close()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGINT (its graceful shutdown closes the database), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def milvus_server(tmp_path: Path) -> Iterator[MilvusServer]:
    """A fresh Milvus Lite server for the test, stopped after it."""
    server = MilvusServer(tmp_path / "milvus").start()
    try:
        yield server
    finally:
        server.stop()
