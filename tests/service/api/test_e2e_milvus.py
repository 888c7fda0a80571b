"""The gateway on the Milvus engine (`UFO_INDEX__ENGINE=milvus`, an embedded Milvus Lite file) over real HTTP,
beside test_e2e.py's shared suite: a restart loses nothing and writes no index state of the gateway's own; a
model upgrade fills the new version's collection beside the live one and switches with no mixed answer; the
trained demo face gallery gives the same rank-1 answers on FAISS and on Milvus."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.app import create_app

from .conftest import DEMO_MODELS, app_settings, export_random_vit, start_server
from .test_demo_models import b64
from .test_upgrade_route import SelfSearches, enroll_images, wait_for_answers, wait_for_upgrade

N_PEOPLE = 12  # past the recall@10 the Milvus engine tunes on


def milvus(workdir: Path) -> dict[str, str]:
    return {"index__engine": "milvus", "milvus__uri": str(workdir / "milvus" / "index.db")}


def unit(seed: int, dim: int = 128) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).tolist()


def top_id(client: httpx.Client, seed: int) -> str:
    response = client.post("/v1/tasks/face/search", json={"embedding": unit(seed), "k": 1})
    assert response.status_code == 200, response.text
    return response.json()["hits"][0]["id"]


def test_restart_keeps_everything_and_the_gateway_holds_no_index_state(api_repo: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "gw"
    server = start_server(api_repo, workdir, **milvus(tmp_path))
    try:
        with server.client() as client:
            items = [{"id": f"m{i}", "embedding": unit(i), "metadata": {"n": i, "even": i % 2 == 0}} for i in range(6)]
            assert client.post("/v1/tasks/face/items", json={"items": items}).status_code == 200
            assert client.delete("/v1/tasks/face/items/m3").status_code == 204
            upsert = {"id": "m4", "embedding": unit(40), "metadata": {"n": 40}}
            assert client.post("/v1/tasks/face/items", json=upsert).status_code == 200
    finally:
        server.stop()  # (Milvus Lite re-raises SIGTERM after the graceful shutdown: the exit code is -15)
    assert "Application shutdown complete" in server.logs()
    assert not (server.data_dir / "index").exists() and not (server.data_dir / "snapshots").exists()
    server = start_server(api_repo, workdir, **milvus(tmp_path))
    try:
        with server.client() as client:
            assert client.get("/readyz").json()["checks"]["indexes"] == {"face": "ok", "product": "ok"}
            index = client.get("/v1/tasks/face/index").json()
            assert (index["size"], index["type"], index["state"]) == (5, "milvus:FLAT", "ready")
            assert [top_id(client, s) for s in (0, 1, 5, 40)] == ["m0", "m1", "m5", "m4"]
            assert top_id(client, 3) != "m3"  # deleted before the restart: stays deleted
            even = client.post("/v1/tasks/face/search", json={"embedding": unit(0), "k": 10,
                                                               "filter": {"even": True}}).json()["hits"]
            assert sorted(h["id"] for h in even) == ["m0", "m2"]  # m4 was overwritten without `even`
    finally:
        server.stop()


def wait_for_job(client: httpx.Client, reason: str) -> dict:
    for _ in range(600):
        index = client.get("/v1/tasks/face/index").json()
        if (index["job"] or {}).get("reason") == reason and index["job"]["state"] in ("done", "failed"):
            return index
        time.sleep(0.1)
    raise AssertionError(f"no finished {reason} rebuild: {index}")


def test_a_flat_collection_outgrown_is_made_again_as_hnsw_with_no_write_lost(api_repo: Path,
                                                                              tmp_path: Path) -> None:
    """Milvus never changes an index's type: past flat_below the follower makes the collection again (HNSW,
    ef tuned) beside the live one and moves the alias, while writes keep coming; the admin route does it too,
    and the follower again once the collection has doubled since its ef was tuned."""
    settings = {**milvus(tmp_path), "index__flat_below": "20", "index__poll_interval_s": "0.1",
                "index__min_rebuild_gap_s": "0"}
    server = start_server(api_repo, tmp_path / "gw", **settings)
    try:
        with server.client() as client:
            first = client.get("/v1/tasks/face/index").json()
            assert (first["type"], first["size"]) == ("milvus:FLAT", 0)
            items = [{"id": f"g{i}", "embedding": unit(i)} for i in range(30)]
            assert client.post("/v1/tasks/face/items", json={"items": items}).status_code == 200
            written = 30
            while (client.get("/v1/tasks/face/index").json()["job"] or {}).get("state") != "done" and written < 300:
                item = {"id": f"g{written}", "embedding": unit(written)}  # writes while it is made again
                assert client.post("/v1/tasks/face/items", json=item).status_code == 200
                written += 1
            index = wait_for_job(client, "size")
            assert index["job"]["state"] == "done", index["job"]
            assert index["type"] == "milvus:HNSW" and index["search_params"].startswith("ef="), index
            assert index["size"] == written and index["recall"] >= 0.95
            assert [top_id(client, s) for s in range(written)] == [f"g{s}" for s in range(written)]
            made = index["job"]["last_version"]  # the new collection's name

            again = client.post("/v1/tasks/face/index/rebuild")
            assert again.status_code == 200 and again.json()["state"] == "running", again.text
            index = wait_for_job(client, "request")
            assert index["job"]["state"] == "done" and index["job"]["last_version"] != made, index["job"]
            assert (index["type"], index["size"]) == ("milvus:HNSW", written)
            assert [top_id(client, s) for s in range(0, written, 7)] == [f"g{s}" for s in range(0, written, 7)]
            tuned_in = index["job"]["last_version"]

            more = [{"id": f"g{i}", "embedding": unit(i)} for i in range(written, 2 * written)]
            assert client.post("/v1/tasks/face/items", json={"items": more}).status_code == 200
            index = wait_for_job(client, "size")  # doubled since its ef was tuned: made and tuned again
            assert index["job"]["state"] == "done" and index["job"]["last_version"] != tuned_in, index["job"]
            assert (index["type"], index["size"]) == ("milvus:HNSW", 2 * written)
            assert top_id(client, 2 * written - 1) == f"g{2 * written - 1}"
    finally:
        server.stop()


def test_upgrade_moves_the_alias_with_no_mixed_answer(api_repo: Path, tmp_path: Path,
                                                      faces: dict[str, list[bytes]]) -> None:
    repo = Path(shutil.copytree(api_repo, tmp_path / "repo"))
    gallery = {person: images[0] for person, images in list(faces.items())[:N_PEOPLE]}
    # the first collection starts empty (exact: FLAT); the upgrade's, filled with the gallery, is past
    # flat_below: HNSW, its ef tuned to the recall target once filled
    hnsw = {**milvus(tmp_path), "index__flat_below": str(N_PEOPLE), "index__canary_interval_s": "0.2"}
    server = start_server(repo, tmp_path / "gw", **hnsw)
    try:
        with server.client() as client:
            enroll_images(client, gallery)
            export_random_vit(repo, "face", "ufo_face", seed=7)  # version 2 appears in the repository
            with SelfSearches(server, gallery) as load:
                wait_for_answers(load)
                started = client.post("/v1/tasks/face/model/upgrade", json={})
                assert started.status_code == 202, started.text
                upgrade = wait_for_upgrade(client)
                wait_for_answers(load, len(load.answers) + len(gallery))  # some after the cut-over
            assert upgrade["state"] == "done" and upgrade["from"] == "ufo_face/1", upgrade
            assert not load.failures, load.failures[:3]
            assert {version for *_, version in load.answers} == {"ufo_face/1", "ufo_face/2"}
            assert all(top == query and score > 0.99 for query, top, score, _ in load.answers)  # never a mix
    finally:
        server.stop()
    server = start_server(repo, tmp_path / "gw", **hnsw)  # the alias names v2's collection now
    try:
        with server.client() as client:
            assert client.get("/v1/tasks/face/model").json()["model_version"] == "ufo_face/2"
            index = client.get("/v1/tasks/face/index").json()
            assert (index["size"], index["type"]) == (N_PEOPLE, "milvus:HNSW"), index
            assert index["search_params"].startswith("ef=") and index["recall"] >= 0.95, index  # as tuned
            assert top_id(client, 1) in gallery  # live queries for the recall canary
            for _ in range(300):
                if (index := client.get("/v1/tasks/face/index").json())["canary_recall"] is not None:
                    break
                time.sleep(0.1)
            assert index["canary_exact"] is True and index["canary_recall"] >= 0.9, index
    finally:
        server.stop()


@pytest.mark.skipif(not (DEMO_MODELS / "ufo_face").is_dir(), reason="no trained demo repository (demo/models)")
def test_demo_face_gallery_same_rank1_on_both_engines(tmp_path: Path, faces: dict[str, list[bytes]]) -> None:
    gallery = [{"id": f"{p}_{n + 1:04d}", "image": b64(images[n]), "metadata": {"person": p}}
               for p, images in faces.items() for n in range(5)]
    answers = {}
    for engine, settings in (("faiss", {}), ("milvus", milvus(tmp_path))):
        server = start_server(DEMO_MODELS, tmp_path / engine, **settings)
        try:
            with server.client() as client:
                assert client.post("/v1/tasks/face/items", json={"items": gallery}).status_code == 200
                answers[engine] = [[(h["id"], round(h["score"], 4)) for h in client.post(
                    "/v1/tasks/face/search", json={"image": b64(image), "k": 3}).json()["hits"]]
                    for images in faces.values() for image in images[5:]]
        finally:
            server.stop()
    assert [a[0][0] for a in answers["faiss"]] == [a[0][0] for a in answers["milvus"]]  # the same rank-1
    assert answers["faiss"] == answers["milvus"]  # and the same top 3 with the same scores



@pytest.mark.anyio
async def test_milvus_down_is_503_and_not_ready(api_repo: Path, tmp_path: Path) -> None:
    """In process (Milvus Lite runs inside the gateway's process: its server is released, as an outage)."""
    import asyncio

    from milvus_lite.server_manager import server_manager_instance

    uri = str(tmp_path / "milvus" / "index.db")
    settings = app_settings(api_repo, tmp_path, index={"engine": "milvus", "poll_interval_s": 0.1},
                            milvus={"uri": uri})
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(  # a 503 from the catch-all handler,
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),  # which Starlette re-raises
            base_url="http://gateway") as client:
        assert (await client.post("/v1/tasks/face/items", json={"id": "a", "embedding": unit(1)})).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        server_manager_instance.release_server(uri)
        search = await client.post("/v1/tasks/face/search", json={"embedding": unit(1), "k": 1})
        assert search.status_code == 503 and "Retry-After" in search.headers, search.text
        for _ in range(2400):  # the follower's next round pings the engine (a busy machine: generous)
            if (ready := await client.get("/readyz")).status_code == 503:
                break
            await asyncio.sleep(0.05)
        assert ready.status_code == 503 and "Milvus" in ready.json()["checks"]["indexes"]["face"], ready.text
