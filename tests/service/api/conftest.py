"""Gateway test fixtures: a small real model repository, real uvicorn server processes, ORL face images.

The repository holds two randomly initialised `demo` StaticViTs (face and product) exported exactly as
`ufo export` does. Random weights embed every face almost alike (cosines ≈ 0.998), so their verification
threshold is set just under the self-similarity of one image re-encoded (≈ 0.9999999): tests that need the
model to tell identities apart use `demo/models` (trained) instead, and are skipped without it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from model_store.export import export_model
from model_store.triton import free_port
from service.app import create_app
from service.config import Settings
from tests.service.worker.conftest import RedisServer

ROOT = Path(__file__).resolve().parents[3]
DEMO_MODELS = ROOT / "demo" / "models"
RANDOM_THRESHOLD = 0.99999
MODELS = {"face": "ufo_face", "product": "ufo_product"}


def export_random_vit(repository: Path, task: str, model_name: str, seed: int) -> Path:
    """A seeded random `demo` StaticViT (largest config) exported for CPU serving."""
    from ufo.model.config import largest_config
    from ufo.model.presets import get_arch
    from ufo.model.static import StaticViT

    arch = get_arch("demo")
    torch.manual_seed(seed)
    module = StaticViT(arch, largest_config(arch)).eval()
    return export_model(module, repository, model_name=model_name, task=task, input_size=arch.img_size,
                        architecture={"preset": "demo", "seed": seed}, kind="cpu", max_batch_size=32,
                        instances=1, intra_op_threads=1, verification_threshold=RANDOM_THRESHOLD)


@pytest.fixture(scope="session")
def api_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ufo_face/1 and ufo_product/1, random weights."""
    repository = tmp_path_factory.mktemp("api") / "repo"
    for seed, (task, name) in enumerate(MODELS.items()):
        export_random_vit(repository, task, name, seed)
    return repository


@pytest.fixture(scope="session")
def faces(tiny_demo: Path) -> dict[str, list[bytes]]:
    """Held-out ORL identities s29..s40 → their 10 PGM images, in order."""
    folder = tiny_demo / "face" / "test"
    return {p.name: [f.read_bytes() for f in sorted(p.glob("*.pgm"))]
            for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.is_dir()}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test (AOF on, appendfsync always), stopped after it."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class LiveServer:
    """A `ufo serve` process on a free loopback port."""

    url: str
    process: subprocess.Popen
    log_path: Path
    data_dir: Path
    backend: str = "embedded"

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **options)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (graceful: snapshots are written), SIGKILL if it hangs; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def server_env(repository: Path, workdir: Path, **settings: str) -> dict[str, str]:
    """The environment of a server process: no inherited UFO_* settings, one thread per library."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UFO_")}
    env.update({
        "UFO_REPOSITORY": str(repository), "UFO_DATA_DIR": str(workdir / "data"),
        "UFO_STORE_URL": f"sqlite:///{workdir / 'store'}", "UFO_EMBEDDED__SESSIONS_PER_MODEL": "1",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
    })
    env.update({f"UFO_{k.upper()}": v for k, v in settings.items()})
    return env


def start_server(repository: Path, workdir: Path, *, flags: Sequence[str] = (), ready_timeout_s: float = 120.0,
                 **settings: str) -> LiveServer:
    """Start `ufo serve [flags]` and wait until /healthz answers (the lifespan has loaded models and indexes)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    command = [sys.executable, "-m", "ufo_cli", "serve", "--port", str(port), "--no-access-log", *flags]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, env=server_env(repository, workdir, **settings), cwd=ROOT,
                                   stdout=log_file, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path, workdir / "data",
                        settings.get("backend", "embedded"))
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.logs()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not up after {ready_timeout_s} s:\n{server.logs()[-4000:]}")


@pytest.fixture(scope="session")
def embedded_server(api_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One embedded-backend server shared by the suites that do not need a fresh gallery."""
    server = start_server(api_repo, tmp_path_factory.mktemp("embedded-server"), limits__max_body_bytes="1000000")
    yield server
    server.stop()


def app_settings(repository: Path, workdir: Path, **overrides: object) -> Settings:
    """Settings for an in-process app over `repository`, with its own store and data folder."""
    options: dict[str, object] = {
        "repository": repository, "data_dir": workdir / "data", "store_url": f"sqlite:///{workdir / 'store'}",
        "embedded": {"sessions_per_model": 1},
    }
    return Settings(**{**options, **overrides})


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process with its lifespan running, and a client talking to it over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client
