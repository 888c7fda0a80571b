"""A model upgrade in distributed mode, all real processes: one redis-server, two `ufo serve` replicas sharing
the Redis store, one data folder (kept images and announced snapshots) and one model repository.

Face images are enrolled on replica A; a second version of the face model is exported into the repository;
the admin route starts the upgrade on A (in Redis mode nothing upgrades by itself: replicas would race).
A re-embeds the gallery from the kept images and cuts over; replica B hears of the new model's snapshot,
loads that version and adopts it without a restart. Meanwhile B keeps answering self-searches of the
enrolled images, never with a mix of models. Afterwards both replicas serve ufo_face/2 with the same
gallery, a write on either reaches the other, and a restarted B still serves ufo_face/2.

As in test_upgrade_route: the two versions are unrelated random ViTs, under which any two faces score
≈ 0.998 and an image searched for itself ≈ 1.0 — but only when the query and the index are of one model,
so a self-search scoring > 0.99 with the right top id proves no mix.

The last tests hold open the window between A's cut-over and B's adoption (B's repository gets ufo_face/2
late): B retries the adoption until it can, and meanwhile is not ready and refuses writes (the store's
model-version fence), so no old-model record enters the gallery."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import httpx
import pytest
import redis

from service.api.auth import create_key
from service.worker.records import SnapshotInfo
from tests.service.worker.conftest import RedisServer

from .conftest import LiveServer, export_random_vit, start_server
from .test_redis_replicas import POLL_S, index_of, wait_until
from .test_upgrade_route import SelfSearches, assert_self_matches, b64, enroll_images, self_search, wait_for_upgrade

N_PEOPLE = 8
ADOPT_S = 60.0  # bound on the wait for B to adopt the new model (no timing assertion)



def model_of(client: httpx.Client) -> dict:
    response = client.get("/v1/tasks/face/model")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.timeout(180)
def test_upgrade_on_one_replica_is_adopted_by_the_other_without_a_restart(
        api_repo: Path, tmp_path: Path, redis_server: RedisServer, faces: dict[str, list[bytes]]) -> None:
    repo = Path(shutil.copytree(api_repo, tmp_path / "repo"))  # private: this test adds ufo_face/2
    admin_key, admin_record = create_key(["admin"])
    read_key, read_record = create_key(["read", "write"])
    admin = {"Authorization": f"Bearer {admin_key}"}
    user = {"Authorization": f"Bearer {read_key}"}
    shared = tmp_path / "shared"  # both replicas' data_dir: kept images and snapshots are shared
    settings = {"store_url": redis_server.url, "data_dir": str(shared),
                "api_keys": f'["{admin_record.render()}", "{read_record.render()}"]',
                "index__poll_interval_s": str(POLL_S), "index__canary_interval_s": "0",
                "index__rebuild_tombstone_ratio": "0"}
    people = list(faces)
    gallery = {person: faces[person][0] for person in people[:N_PEOPLE]}
    late_b = {"late-b": faces[people[N_PEOPLE]][0]}  # enrolled on B after it adopted ufo_face/2
    late_a = {"late-a": faces[people[N_PEOPLE + 1]][0]}  # and one on A
    servers: list[LiveServer] = []
    try:
        servers.append(start_server(repo, tmp_path / "a", **settings))
        servers.append(start_server(repo, tmp_path / "b", **settings))
        a_server, b_server = servers
        a, b = a_server.client(headers=admin), b_server.client(headers=admin)

        # 1. Images enrolled on A (kept under the shared data folder); B converges.
        enroll_images(a, gallery)
        wait_until(lambda: index_of(b)["size"], lambda n: n == len(gallery), "B holds A's items")
        for item_id, image in gallery.items():
            assert self_search(b, item_id, image)[::2] == (item_id, "ufo_face/1")

        # 2. ufo_face/2 appears in the repository both replicas serve from: neither upgrades by itself.
        export_random_vit(repo, "face", "ufo_face", seed=7)
        for client in (a, b):
            model = model_of(client)
            assert model["model_version"] == "ufo_face/1" and model["available_versions"] == [2, 1]
            assert model["upgrade"] is None and model["images_kept"] is True
        with a_server.client(headers=user) as not_admin:
            refused = not_admin.post("/v1/tasks/face/model/upgrade", json={})
            assert refused.status_code == 403, refused.text

        # 3. Upgrade on A while B answers self-searches.
        with SelfSearches(b_server, gallery, headers=user) as load:
            wait_until(lambda: len(load.answers), lambda n: n >= len(gallery), "B's first self-searches")
            started = a.post("/v1/tasks/face/model/upgrade", json={})
            assert started.status_code == 202, started.text
            assert started.json()["upgrade"]["model_version"] == "ufo_face/2"
            upgrade = wait_for_upgrade(a)
            assert upgrade["state"] == "done", upgrade
            assert upgrade["dropped"] == 0 and upgrade["from"] == "ufo_face/1"
            assert model_of(a)["model_version"] == "ufo_face/2"
            adopted = wait_until(lambda: model_of(b), lambda m: m["model_version"] == "ufo_face/2",
                                 "B adopts ufo_face/2 from A's snapshot", ADOPT_S)
            assert adopted["version"] == 2 and adopted["upgrade"] is None  # adopted, not upgraded on B
            seen = len(load.answers)
            wait_until(lambda: len(load.answers), lambda n: n >= seen + len(gallery), "B's searches after adopting")
        assert not load.failures, load.failures[:3]
        assert "ufo_face/2" in load.versions(), load.versions()  # B answered with the new model, in flight
        mixed = [answer for answer in load.answers if answer[1] != answer[0] or answer[2] <= 0.99]
        assert not mixed, mixed[:3]  # never a query of one model searched in the other's index

        # 4. Both replicas: the same gallery, all of ufo_face/2, each image finds itself.
        index_a, index_b = index_of(a), index_of(b)
        assert index_a["model_version"] == index_b["model_version"] == "ufo_face/2"
        assert index_a["size"] == index_b["size"] == len(gallery)
        with redis.Redis.from_url(redis_server.url) as r:
            announced = SnapshotInfo.from_json(r.get("ufo:{jobs}:latest:face"))  # what A's upgrade announced
        assert announced.model_version == "ufo_face/2" and announced.count == len(gallery)
        assert index_a["version"] == index_b["version"] == announced.version  # B adopted A's snapshot
        assert index_a["state"] == index_b["state"] == "ready", (index_a, index_b)
        for client in (a, b):
            assert_self_matches(client, gallery, "ufo_face/2")
            for item_id in gallery:
                assert client.get(f"/v1/tasks/face/items/{item_id}").json()["model_version"] == "ufo_face/2"

        # 5. After the cut-over, writes on either replica reach the other, embedded by ufo_face/2.
        enroll_images(b, late_b)
        enroll_images(a, late_a)
        for client, (item_id, image) in ((a, *late_b.items()), (b, *late_a.items())):
            found = wait_until(lambda c=client, i=image: self_search(c, "", i), lambda hit, i=item_id: hit[0] == i,
                               f"{item_id} found on the other replica")
            assert found[1] > 0.999 and found[2] == "ufo_face/2", found
        gallery |= late_a | late_b
        wait_until(lambda: (index_of(a)["size"], index_of(b)["size"]), lambda n: n == (len(gallery),) * 2,
                   "both replicas hold every item")

        # 6. A restarted B serves the gallery's version, ufo_face/2, with the same gallery.
        assert b_server.stop() in (0, -signal.SIGTERM)
        b.close()
        servers[1] = b_server = start_server(repo, tmp_path / "b", **settings)
        b = b_server.client(headers=admin)
        assert model_of(b)["model_version"] == "ufo_face/2"
        restarted = index_of(b)
        assert restarted["model_version"] == "ufo_face/2" and restarted["size"] == len(gallery)
        assert_self_matches(b, gallery, "ufo_face/2")
        a.close()
        b.close()
        for server in servers:
            server.stop()
            assert "Traceback" not in server.logs(), server.logs()[-3000:]
    finally:
        for server in servers:
            server.stop()
        for server in servers:
            print(f"--- {server.url} (tail) ---\n{server.logs()[-3000:]}")



# -- a replica that cannot adopt the new model at once (its repository lacks the version yet) ------------------
# Deterministic reproductions of what happens to a replica between another replica's cut-over and its own
# adoption: here B's repository gets ufo_face/2 only after A announced it, so that window is held open.

def split_replicas(api_repo: Path, tmp_path: Path, redis_url: str,
                   gallery: dict[str, bytes]) -> tuple[list[LiveServer], Path, Path, dict[str, str]]:
    """A and B sharing the Redis store and the data folder but not the repository; the gallery enrolled on A,
    ufo_face/2 exported into A's repository only, and A upgraded to it. B tried to adopt it and could not."""
    repo_a = Path(shutil.copytree(api_repo, tmp_path / "repo-a"))
    repo_b = Path(shutil.copytree(api_repo, tmp_path / "repo-b"))
    settings = {"store_url": redis_url, "data_dir": str(tmp_path / "shared"),
                "index__poll_interval_s": str(POLL_S), "index__canary_interval_s": "0",
                "index__rebuild_tombstone_ratio": "0"}
    servers = [start_server(repo_a, tmp_path / "a", **settings)]
    servers.append(start_server(repo_b, tmp_path / "b", **settings))
    with servers[0].client() as a, servers[1].client() as b:
        enroll_images(a, gallery)
        wait_until(lambda: index_of(b)["size"], lambda n: n == len(gallery), "B holds A's items")
        export_random_vit(repo_a, "face", "ufo_face", seed=7)
        assert a.post("/v1/tasks/face/model/upgrade", json={}).status_code == 202
        assert wait_for_upgrade(a)["state"] == "done"
        wait_until(lambda: servers[1].logs(), lambda text: "cannot adopt it yet" in text,
                   "B tried to adopt ufo_face/2")
        assert model_of(b)["model_version"] == "ufo_face/1"  # it has no ufo_face/2 to embed with
    return servers, repo_a, repo_b, settings


def give_version_2(repo_a: Path, repo_b: Path) -> None:
    """ufo_face/2 reaches B's repository (a later sync of the model volume)."""
    shutil.copytree(repo_a / "ufo_face" / "2", repo_b / "ufo_face" / "2")


@pytest.mark.timeout(120)
def test_replica_adopts_the_new_model_once_its_repository_has_it(
        api_repo: Path, tmp_path: Path, redis_server: RedisServer, faces: dict[str, list[bytes]]) -> None:
    gallery = {person: faces[person][0] for person in list(faces)[:N_PEOPLE]}
    servers, repo_a, repo_b, _ = split_replicas(api_repo, tmp_path, redis_server.url, gallery)
    try:
        give_version_2(repo_a, repo_b)
        with servers[1].client() as b:
            wait_until(lambda: model_of(b)["model_version"], lambda v: v == "ufo_face/2",
                       "B adopts ufo_face/2 once it can load it", timeout_s=10.0)
            assert_self_matches(b, gallery, "ufo_face/2")
    finally:
        for server in servers:
            server.stop()


@pytest.mark.timeout(120)
def test_a_replica_behind_the_galleries_model_refuses_writes_until_it_adopts(
        api_repo: Path, tmp_path: Path, redis_server: RedisServer, faces: dict[str, list[bytes]]) -> None:
    people = list(faces)
    gallery = {person: faces[person][0] for person in people[:N_PEOPLE]}
    servers, repo_a, repo_b, settings = split_replicas(api_repo, tmp_path, redis_server.url, gallery)
    try:
        late = {"late-b": faces[people[N_PEOPLE]][0]}
        with servers[0].client() as a, servers[1].client() as b:
            refused = b.post("/v1/tasks/face/items", json={"id": "late-b", "image": b64(late["late-b"])})
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert "moved to model ufo_face/2" in refused.json()["detail"]  # the store's fence said no
            ready = b.get("/readyz")
            assert ready.status_code == 503 and "cannot adopt it yet" in ready.json()["checks"]["indexes"]["face"]
            assert "cannot adopt it yet" in index_of(b)["detail"]
            versions = {a.get(f"/v1/tasks/face/items/{i}").json()["model_version"] for i in gallery}
            assert versions == {"ufo_face/2"}  # no old-model record entered the store
            give_version_2(repo_a, repo_b)
            wait_until(lambda: model_of(b)["model_version"], lambda v: v == "ufo_face/2", "B adopts ufo_face/2")
            assert b.get("/readyz").status_code == 200
            enroll_images(b, late)  # now accepted, by the new model
            gallery |= late
            found = wait_until(lambda: self_search(a, "", late["late-b"]), lambda hit: hit[0] == "late-b",
                               "A finds B's item")
            assert found[1] > 0.999 and found[2] == "ufo_face/2"
        servers[1].stop()
        (tmp_path / "shared" / "index" / "face.snapshot").unlink(missing_ok=True)  # rebuilt from the store
        servers[1] = start_server(repo_b, tmp_path / "b", **settings)
        with servers[1].client() as b:
            assert model_of(b)["model_version"] == "ufo_face/2"
            index = index_of(b)
            assert index["state"] == "ready" and index["size"] == len(gallery) == N_PEOPLE + 1, index
            assert_self_matches(b, gallery, "ufo_face/2")
    finally:
        for server in servers:
            server.stop()
