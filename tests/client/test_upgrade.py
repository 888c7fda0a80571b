"""Model status and upgrades through the client, against the real gateway. A gateway with an empty gallery
starts on the newest version: product v2 → v1 with `UFOClient`, then back to the newest with
`AsyncUFOClient`; plus many concurrent async calls on one client."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import pytest

from tests.service.api.conftest import LiveServer
from ufo_client import AsyncUFOClient, Conflict, ModelStatus, NotFound, UFOClient

UPGRADE_TIMEOUT_S = 120.0


def finished(status: ModelStatus) -> bool:
    return status.upgrade is not None and status.upgrade["state"] != "running"


def wait_until_upgraded(client: UFOClient, task: str) -> ModelStatus:
    deadline = time.monotonic() + UPGRADE_TIMEOUT_S
    while not finished(status := client.model(task)):
        assert time.monotonic() < deadline, f"upgrade still running: {status.upgrade}"
        time.sleep(0.2)
    return status


async def wait_until_upgraded_async(model: Callable[[str], Awaitable[ModelStatus]], task: str) -> ModelStatus:
    deadline = time.monotonic() + UPGRADE_TIMEOUT_S
    while not finished(status := await model(task)):
        assert time.monotonic() < deadline, f"upgrade still running: {status.upgrade}"
        await anyio.sleep(0.2)
    return status


def assert_serves(status: ModelStatus, version: int) -> None:
    assert (status.version, status.model_version) == (version, f"ufo_product/{version}")
    assert status.upgrade is not None and status.upgrade["state"] == "done", status.upgrade


def test_model_status_and_upgrade_both_ways(live: LiveServer, keys: dict[str, str], face: list[bytes]) -> None:
    with UFOClient(live.url, api_key=keys["admin"]) as client:
        before = client.model("product")
        assert (before.version, before.available_versions, before.images_kept) == (2, [2, 1], True)
        assert before.loaded_versions == [2] and before.upgrade is None
        client.enroll("product", id="shoe", image=face[0])
        with pytest.raises(NotFound) as unknown:
            client.upgrade("product", 9)
        assert unknown.value.type == "urn:ufo:problem:unknown-model-version"
        with pytest.raises(Conflict, match="already serves ufo_product/2"):
            client.upgrade("product", 2)

        started = client.upgrade("product", 1)
        assert started.task == "product" and started.upgrade is not None
        assert_serves(wait_until_upgraded(client, "product"), 1)
        found = client.search("product", image=face[0], k=1)
        assert found.model_version == "ufo_product/1" and found.hits[0].id == "shoe" and found.hits[0].score > 0.999

    async def to_newest() -> None:
        async with AsyncUFOClient(live.url, api_key=keys["admin"]) as aclient:
            await aclient.upgrade("product", drop_missing=False)  # the repository's newest
            assert_serves(await wait_until_upgraded_async(aclient.model, "product"), 2)
            found = await aclient.search("product", image=face[0], k=1)
            assert found.model_version == "ufo_product/2" and found.hits[0].id == "shoe"

    anyio.run(to_newest)


@pytest.mark.anyio
async def test_concurrent_async_calls_share_one_client(live: LiveServer, keys: dict[str, str],
                                                       face: list[bytes]) -> None:
    async with AsyncUFOClient(live.url, api_key=keys["admin"]) as client:
        run = uuid.uuid4().hex  # other tests enrolled the same images: search only this test's items
        await client.enroll_many("face", [{"id": f"concurrent-{n}", "image": image, "metadata": {"run": run}}
                                          for n, image in enumerate(face)], batch_size=5)
        results = await asyncio.gather(*(client.search("face", image=image, k=1, filter={"run": run})
                                         for image in face))
        assert [r.hits[0].id for r in results] == [f"concurrent-{n}" for n in range(len(face))]
