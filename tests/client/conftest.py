"""Client test fixtures: one real `ufo serve` process (uvicorn, embedded ONNX Runtime, SQLite) with API keys
enforced, over a private copy of the gateway tests' random-weight repository plus a second product version
(so an upgrade can run), reused by the sync and the async tests.

Each test writes under its own item ids, so the tests share the server without depending on each other.
"""

from __future__ import annotations

import functools
import inspect
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from service.api.auth import create_key
from tests.service.api.conftest import (  # noqa: F401 - api_repo and faces are fixtures used here
    LiveServer,
    api_repo,
    export_random_vit,
    faces,
    start_server,
)
from ufo_client import AsyncUFOClient, UFOClient

DIM = 128


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    """scope → a key of that scope, and 'records' → the JSON list the server is configured with."""
    made = {scope: create_key([scope]) for scope in ("read", "write", "admin")}
    return {**{scope: key for scope, (key, _) in made.items()},
            "records": json.dumps([record.render() for _, record in made.values()])}


@pytest.fixture(scope="session")
def client_repo(api_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """ufo_face/1, ufo_product/1 and ufo_product/2 (another random ViT, for the upgrade tests)."""
    repository = Path(shutil.copytree(api_repo, tmp_path_factory.mktemp("client") / "repo"))
    export_random_vit(repository, "product", "ufo_product", seed=7)
    return repository


@pytest.fixture(scope="session")
def live(client_repo: Path, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(client_repo, tmp_path_factory.mktemp("client-server"), api_keys=keys["records"],
                          auto_upgrade="false", limits__max_items_per_request="8")
    yield server
    server.stop()


@pytest.fixture
def client(live: LiveServer, keys: dict[str, str]) -> Iterator[UFOClient]:
    with UFOClient(live.url, api_key=keys["admin"]) as ufo:
        yield ufo


@pytest.fixture
def face(faces: dict[str, list[bytes]]) -> list[bytes]:  # noqa: F811
    """Ten images of one held-out ORL identity."""
    return next(iter(faces.values()))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Blocking:
    """An AsyncUFOClient driven from a test thread: each coroutine method runs on the portal's event loop,
    so one test body exercises the sync and the async client alike."""

    def __init__(self, portal: BlockingPortal, client: AsyncUFOClient) -> None:
        self.portal, self.client = portal, client

    def __getattr__(self, name: str) -> Callable[..., object]:
        method = getattr(self.client, name)
        if not inspect.iscoroutinefunction(method):
            return method
        return lambda *args, **kwargs: self.portal.call(functools.partial(method, *args, **kwargs))


@pytest.fixture(params=["sync", "async"])
def ufo(request: pytest.FixtureRequest, live: LiveServer, keys: dict[str, str]) -> Iterator[UFOClient]:
    """The sync client, then the async one behind `Blocking`, both with the admin key."""
    if request.param == "sync":
        with UFOClient(live.url, api_key=keys["admin"]) as client:
            yield client
        return
    with start_blocking_portal() as portal:
        client = AsyncUFOClient(live.url, api_key=keys["admin"])
        try:
            yield Blocking(portal, client)  # type: ignore[misc]
        finally:
            portal.call(client.aclose)
