"""The main job with the TRAINED demo models (`demo/models`): enroll the held-out faces, find them again.

Gallery: images 1-5 of each held-out ORL identity (s29-s40, never seen in training); queries: images 6-10.
Reports the rank-1 rate and the verification accuracy at the manifest's calibrated threshold. Skipped, with
the reason, until the demo repository is committed (`UFO_TEST_DEMO_MODELS` points it elsewhere).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from .conftest import DEMO_MODELS, LiveServer, start_server

REPOSITORY = Path(os.environ.get("UFO_TEST_DEMO_MODELS", DEMO_MODELS))
pytestmark = pytest.mark.skipif(
    not (REPOSITORY / "ufo_face").is_dir(),
    reason=f"no trained demo repository at {REPOSITORY} (ufo_face missing): it is produced by `ufo pipeline` + "
           "`ufo export --repository demo/models` and committed by the lead",
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server: LiveServer = start_server(REPOSITORY, tmp_path_factory.mktemp("demo-models"))
    try:
        with server.client() as http:
            yield http
    finally:
        server.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_held_out_faces_found_at_rank1(client: httpx.Client, faces: dict[str, list[bytes]], record_property) -> None:
    gallery = [{"id": f"{p}_{n + 1:04d}", "image": b64(images[n]), "metadata": {"person": p}}
               for p, images in faces.items() for n in range(5)]
    response = client.post("/v1/tasks/face/items", json={"items": gallery})
    assert response.status_code == 200, response.text
    correct = total = 0
    for person, images in faces.items():
        for image in images[5:]:
            hits = client.post("/v1/tasks/face/search", json={"image": b64(image), "k": 5}).json()["hits"]
            correct += hits[0]["metadata"]["person"] == person
            total += 1
    rate = correct / total
    record_property("demo_face_rank1", rate)
    print(f"\ndemo face model: rank-1 of held-out queries against the enrolled held-out gallery: "
          f"{correct}/{total} = {rate:.2f}")
    assert rate > 0.5, f"rank-1 {rate:.2f}: most queries should find their identity first"

    person = next(iter(faces))
    for n in range(5):
        assert client.delete(f"/v1/tasks/face/items/{person}_{n + 1:04d}").status_code == 204
    hits = client.post("/v1/tasks/face/search", json={"image": b64(faces[person][5]), "k": 10}).json()["hits"]
    assert all(hit["metadata"]["person"] != person for hit in hits)  # deleted: gone from every result


def test_verify_separates_same_from_different(client: httpx.Client, faces: dict[str, list[bytes]],
                                              record_property) -> None:
    people = list(faces)
    same, different = [], []
    for i, person in enumerate(people):
        other = people[(i + 1) % len(people)]
        for a, b in ((5, 6), (7, 8)):
            for pairs, image_b in ((same, faces[person][b]), (different, faces[other][b])):
                body = client.post("/v1/tasks/face/verify", json={"image_a": b64(faces[person][a]),
                                                                  "image_b": b64(image_b)}).json()
                pairs.append((body["score"], body["same"]))
    accuracy = (sum(s for _, s in same) + sum(not s for _, s in different)) / (len(same) + len(different))
    gap = np.mean([s for s, _ in same]) - np.mean([s for s, _ in different])
    record_property("demo_face_verify_accuracy", accuracy)
    print(f"\ndemo face model: verify accuracy {accuracy:.2f} on {len(same)} same + {len(different)} different "
          f"pairs; mean score gap {gap:.3f}")
    assert gap > 0 and accuracy > 0.6
