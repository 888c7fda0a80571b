"""On start each task's index comes back: from a matching snapshot (caught up with the store), else rebuilt
from the store; a store holding another model version's vectors leaves that index unavailable, never mixed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from service.core.lifecycle import snapshot_path
from service.store import Item, open_store

from .conftest import app_settings, running_app

DIM = 128


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


async def top_id(client, seed: int) -> str | None:
    hits = (await client.post("/v1/tasks/face/search", json={"embedding": unit(seed), "k": 1})).json()["hits"]
    return hits[0]["id"] if hits else None


@pytest.mark.anyio
async def test_snapshot_then_store_rebuild_across_restarts(api_repo: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = app_settings(api_repo, tmp_path)
    async with running_app(settings) as client:
        items = [{"id": f"r{i}", "embedding": unit(i), "metadata": {"i": i}} for i in range(4)]
        assert (await client.post("/v1/tasks/face/items", json={"items": items})).status_code == 200
        assert (await client.delete("/v1/tasks/face/items/r3")).status_code == 204
    snapshot = snapshot_path(settings.data_dir, "face")
    assert snapshot.exists()  # written on shutdown

    store = await open_store(settings.store_url, "face")  # a write while the gateway is down
    await store.upsert([Item("r9", np.asarray(unit(9), np.float32), {"i": 9}, "ufo_face/1")])
    await store.close()

    caplog.clear()
    async with running_app(settings) as client:
        assert f"loaded snapshot {snapshot}" in caplog.text and "caught up 1 changes" in caplog.text
        index = (await client.get("/v1/tasks/face/index")).json()
        assert index["size"] == 4 and index["state"] == "ready"
        assert [await top_id(client, s) for s in (0, 1, 9)] == ["r0", "r1", "r9"]
        assert await top_id(client, 3) != "r3"  # deleted before the snapshot: stays deleted

    snapshot.unlink()
    caplog.clear()
    async with running_app(settings) as client:
        assert f"loaded snapshot {snapshot}" not in caplog.text
        assert "rebuilt index from store: 4 items" in caplog.text
        assert (await client.get("/v1/tasks/face/index")).json()["size"] == 4
        assert await top_id(client, 9) == "r9"


@pytest.mark.anyio
async def test_items_of_another_model_version_leave_the_index_unavailable(api_repo: Path, tmp_path: Path) -> None:
    settings = app_settings(api_repo, tmp_path)
    store = await open_store(settings.store_url, "face")
    await store.upsert([Item("old", np.asarray(unit(0), np.float32), {}, "ufo_face/0")])
    await store.close()
    async with running_app(settings) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "another model version" in ready.json()["checks"]["indexes"]["face"]
        assert ready.json()["checks"]["indexes"]["product"] == "ok"
        search = await client.post("/v1/tasks/face/search", json={"embedding": unit(0)})
        assert search.status_code == 503 and "re-embed" in search.json()["detail"]
        assert (await client.get("/v1/tasks/face/index")).json()["state"] == "unavailable"
        embed = await client.post("/v1/tasks/face/items", json={"id": "new", "embedding": unit(1)})
        assert embed.status_code == 503  # no write lands in a store the index cannot serve
