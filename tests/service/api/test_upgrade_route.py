"""Model upgrades through a real gateway (uvicorn, embedded backend, SQLite): a second version of the face
model is exported into the repository, POST /model/upgrade re-embeds the gallery from its kept images beside
the live index while searches and image enrollment go on, then cuts over; a restart keeps serving the
gallery's version; a gallery of an older version is upgraded at start (auto_upgrade).

The two versions are different random ViTs: an image's embeddings under v1 and v2 are unrelated, while any
two faces under one model score ≈ 0.998. So an enrolled image searched for itself scores ≈ 1.0 only when
the query and the index are of the same model: a mix would show as a self-score far below 0.99."""

from __future__ import annotations

import base64
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_store.triton import TritonServer

from .conftest import MODELS, LiveServer, export_random_vit, start_server

N_PEOPLE = 8


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def repo(api_repo: Path, tmp_path: Path) -> Path:
    """A private copy of the session's repository (ufo_face/1, ufo_product/1): the tests add versions."""
    return Path(shutil.copytree(api_repo, tmp_path / "repo"))


@pytest.fixture
def gallery(faces: dict[str, list[bytes]]) -> dict[str, bytes]:
    """item id → image: the first image of N_PEOPLE held-out identities."""
    return {person: images[0] for person, images in list(faces.items())[:N_PEOPLE]}


def enroll_images(client: httpx.Client, images: dict[str, bytes]) -> None:
    items = [{"id": item_id, "image": b64(image), "metadata": {"person": item_id}} for item_id, image in images.items()]
    response = client.post("/v1/tasks/face/items", json={"items": items})
    assert response.status_code == 200, response.text


def self_search(client: httpx.Client, item_id: str, image: bytes) -> tuple[str, float, str]:
    """(top id, its score, the model version that answered) for an enrolled image searched for itself."""
    response = client.post("/v1/tasks/face/search", json={"image": b64(image), "k": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["hits"][0]["id"], body["hits"][0]["score"], body["model_version"]


def assert_self_matches(client: httpx.Client, images: dict[str, bytes], version: str) -> None:
    """Every image searched for itself is its own top hit (score > 0.999), answered by model `version`."""
    for item_id, image in images.items():
        top, score, answered = self_search(client, item_id, image)
        assert (top, answered) == (item_id, version) and score > 0.999, (item_id, top, score, answered)


def wait_for_answers(load: SelfSearches, n: int = 1, timeout_s: float = 60.0) -> None:
    """Until the load has `n` answers (so some are answered before what comes next)."""
    deadline = time.monotonic() + timeout_s
    while len(load.answers) < n:
        assert time.monotonic() < deadline, "no search answered"
        time.sleep(0.01)


def wait_for_upgrade(client: httpx.Client, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        upgrade = client.get("/v1/tasks/face/model").json()["upgrade"]
        if upgrade is not None and upgrade["state"] != "running":
            return upgrade
        time.sleep(0.2)
    raise AssertionError(f"the upgrade did not finish in {timeout_s} s")


class SelfSearches:
    """In a thread until stopped: every enrolled image searched for itself on one gateway; each answer
    (query id, top id, score, model version) recorded, and every failure."""

    def __init__(self, server: LiveServer, gallery: dict[str, bytes], headers: dict[str, str] | None = None):
        self.server, self.gallery, self.headers = server, gallery, headers or {}
        self.answers: list[tuple[str, str, float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.server.client(headers=self.headers) as client:
            while not self._stop.is_set():
                for item_id, image in self.gallery.items():
                    try:
                        self.answers.append((item_id, *self_search(client, item_id, image)))
                    except (AssertionError, httpx.HTTPError, KeyError, IndexError) as exc:
                        self.failures.append(f"{item_id}: {exc!r}")

    def versions(self) -> set[str]:
        return {version for *_, version in self.answers}

    def __enter__(self) -> SelfSearches:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the search thread did not stop"


def test_upgrade_reembeds_beside_the_live_index_and_cuts_over(repo: Path, tmp_path: Path, gallery: dict[str, bytes],
                                                               faces: dict[str, list[bytes]]) -> None:
    server = start_server(repo, tmp_path / "gw")
    try:
        with server.client() as client:
            enroll_images(client, gallery)
            other = faces[list(faces)[N_PEOPLE + 1]][0]  # someone not in the gallery
            vector = client.post("/v1/tasks/face/embed", json={"images": [b64(other)]}).json()["embeddings"][0]
            v1_s29 = client.post("/v1/tasks/face/embed", json={"images": [b64(gallery["s29"])]}).json()["embeddings"][0]
            assert client.post("/v1/tasks/face/items", json={"id": "no-image", "embedding": vector}).status_code == 200
            export_random_vit(repo, "face", "ufo_face", seed=7)  # version 2 appears in the repository
            model = client.get("/v1/tasks/face/model").json()
            assert model["model_version"] == "ufo_face/1" and model["available_versions"] == [2, 1]
            assert model["images_kept"] is True and model["upgrade"] is None

            # refused: an item without a kept image (named), an unknown version, malformed bodies
            refused = client.post("/v1/tasks/face/model/upgrade", json={})
            assert refused.status_code == 409 and "no-image" in refused.json()["detail"]
            assert "drop_missing" in refused.json()["detail"]
            assert client.get("/v1/tasks/face/model").json()["loaded_versions"] == [1]  # v2 released again
            missing = client.post("/v1/tasks/face/model/upgrade", json={"version": 9})
            assert missing.status_code == 404 and "no version 9" in missing.json()["detail"]
            assert client.post("/v1/tasks/face/model/upgrade", json={"version": 1}).status_code == 409
            for bad in ({"version": "two"}, {"version": 0}, {"drop_missing": "perhaps"}, {"versoin": 2}):
                assert client.post("/v1/tasks/face/model/upgrade", json=bad).status_code == 422, bad
            garbled = client.post("/v1/tasks/face/model/upgrade", content=b"{not json",
                                  headers={"content-type": "application/json"})
            assert garbled.status_code == 422
            assert client.post("/v1/tasks/nope/model/upgrade", json={}).status_code == 404

            with SelfSearches(server, gallery) as load:
                wait_for_answers(load)
                started = client.post("/v1/tasks/face/model/upgrade", json={"drop_missing": True})
                assert started.status_code == 202, started.text
                assert started.json()["upgrade"]["model_version"] == "ufo_face/2"
                late = {"late": faces[list(faces)[N_PEOPLE]][0]}
                enroll_images(client, late)  # an image, kept: the upgrade re-embeds it too
                no_image = client.post("/v1/tasks/face/items", json={"id": "late-vector", "embedding": vector})
                upgrade = wait_for_upgrade(client)
                wait_for_answers(load, len(load.answers) + len(gallery))  # some after the cut-over
            assert upgrade["state"] == "done", upgrade
            assert upgrade["dropped"] == 1

            # during the upgrade an embedding-only write was refused (unless the cut-over came first)
            assert no_image.status_code in (200, 409), no_image.text
            if no_image.status_code == 409:
                assert "upgrade" in no_image.json()["detail"]
            assert not load.failures, load.failures[:3]
            versions = {version for *_, version in load.answers}
            assert versions == {"ufo_face/1", "ufo_face/2"}, versions  # answered throughout, by both models
            assert all(top == query and score > 0.99 for query, top, score, _ in load.answers)  # never a mix

            model = client.get("/v1/tasks/face/model").json()
            assert model["model_version"] == "ufo_face/2" and model["loaded_versions"] == [1, 2]  # v1 retires later
            expected = set(gallery) | {"late"} | ({"late-vector"} if no_image.status_code == 200 else set())
            index = client.get("/v1/tasks/face/index").json()
            assert index["model_version"] == "ufo_face/2" and index["size"] == len(expected)
            assert client.get("/v1/tasks/face/items/no-image").status_code == 404  # dropped: no kept image
            for item_id in {**gallery, **late}:
                assert client.get(f"/v1/tasks/face/items/{item_id}").json()["model_version"] == "ufo_face/2"
            assert_self_matches(client, {**gallery, **late}, "ufo_face/2")
            embedded = client.post("/v1/tasks/face/embed", json={"images": [b64(gallery["s29"])]}).json()
            assert embedded["model_version"] == "ufo_face/2"
            assert float(np.dot(embedded["embeddings"][0], v1_s29)) < 0.9  # another model's vector of the image
            metrics = client.get("/metrics").text
            assert 'ufo_model_upgrades_total{outcome="done",task="face"} 1.0' in metrics
            served = [line for line in metrics.splitlines()
                      if line.startswith("ufo_model_info{") and 'task="face"' in line]
            assert len(served) == 1 and 'version="2"' in served[0], served  # the old model's series is gone
        server.stop()
        assert "Traceback" not in server.logs(), server.logs()[-3000:]

        restarted = start_server(repo, tmp_path / "gw")  # the same store and data folder
        try:
            with restarted.client() as client:
                assert client.get("/v1/tasks/face/model").json()["model_version"] == "ufo_face/2"
                assert client.get("/v1/tasks/face/index").json()["size"] == len(expected)
                assert self_search(client, "s29", gallery["s29"])[:1] == ("s29",)
        finally:
            restarted.stop()
    finally:
        server.stop()


def test_gallery_of_an_older_version_is_served_then_upgraded_at_start(repo: Path, tmp_path: Path,
                                                                     gallery: dict[str, bytes]) -> None:
    first = start_server(repo, tmp_path / "gw", auto_upgrade="false")
    try:
        with first.client() as client:
            enroll_images(client, gallery)
    finally:
        first.stop()
    export_random_vit(repo, "face", "ufo_face", seed=7)

    held = start_server(repo, tmp_path / "gw", auto_upgrade="false")  # the gallery's version keeps serving
    try:
        with held.client() as client:
            assert client.get("/v1/tasks/face/model").json()["model_version"] == "ufo_face/1"
            assert client.get("/readyz").status_code == 200
            assert self_search(client, "s30", gallery["s30"])[:1] == ("s30",)
    finally:
        held.stop()

    upgraded = start_server(repo, tmp_path / "gw")  # auto_upgrade (the default) re-embeds at start
    try:
        with upgraded.client() as client:
            assert wait_for_upgrade(client)["state"] == "done"
            assert client.get("/v1/tasks/face/model").json()["model_version"] == "ufo_face/2"
            assert_self_matches(client, {"s30": gallery["s30"]}, "ufo_face/2")
            assert client.get("/v1/tasks/face/index").json()["size"] == len(gallery)
    finally:
        upgraded.stop()


def test_upgrade_without_kept_images_says_clients_must_reenroll(repo: Path, tmp_path: Path,
                                                                 gallery: dict[str, bytes]) -> None:
    server = start_server(repo, tmp_path / "gw", keep_images="false")
    try:
        with server.client() as client:
            enroll_images(client, dict(list(gallery.items())[:2]))
            export_random_vit(repo, "face", "ufo_face", seed=7)
            assert client.get("/v1/tasks/face/model").json()["images_kept"] is False
            refused = client.post("/v1/tasks/face/model/upgrade", json={})
            assert refused.status_code == 409
            assert "UFO_KEEP_IMAGES=false" in refused.json()["detail"] and "re-enroll" in refused.json()["detail"]
            assert client.get("/v1/tasks/face/model").json()["model_version"] == "ufo_face/1"
    finally:
        server.stop()


def test_upgrade_on_the_triton_backend(repo: Path, tmp_path: Path, gallery: dict[str, bytes]) -> None:
    """The same cut-over with a real tritonserver embedding: the backend asks it to reload the model, which
    then serves both versions (`version_policy: all`) until the old one is released."""
    with TritonServer(repo, load_models=list(MODELS.values()), ready_timeout_s=120) as triton:
        server = start_server(repo, tmp_path / "gw", backend="triton", triton__url=triton.grpc_url,
                              triton__load_models="true")
        try:
            with server.client() as client:
                enroll_images(client, gallery)
                export_random_vit(repo, "face", "ufo_face", seed=7)
                with SelfSearches(server, gallery) as load:
                    wait_for_answers(load)
                    assert client.post("/v1/tasks/face/model/upgrade", json={}).status_code == 202
                    assert wait_for_upgrade(client)["state"] == "done"
                    wait_for_answers(load, len(load.answers) + len(gallery))  # some after the cut-over
                assert not load.failures, load.failures[:3]
                assert all(top == query and score > 0.99 for query, top, score, _ in load.answers)
                assert {version for *_, version in load.answers} == {"ufo_face/1", "ufo_face/2"}
                assert_self_matches(client, gallery, "ufo_face/2")
                assert client.get("/readyz").status_code == 200
        finally:
            server.stop()
