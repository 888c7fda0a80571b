"""Every endpoint through the client against a real gateway process, once with `UFOClient` and once with
`AsyncUFOClient` (the `ufo` fixture). The models have random weights: any two faces score ≈ 0.998, an image
against itself ≈ 1.0, so searches look for an enrolled image itself and embeddings are orthogonal unit vectors.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ufo_client import UFOClient
from ufo_client.models import Enrolled

from .conftest import DIM


def unit(axis: int) -> list[float]:
    vector = [0.0] * DIM
    vector[axis] = 1.0
    return vector


@pytest.fixture
def tag() -> str:
    """A fresh string: item ids and metadata of one test, so tests sharing the server never see each other."""
    return uuid.uuid4().hex[:10]


def test_tasks_and_readiness(ufo: UFOClient) -> None:
    tasks = {task.task: task for task in ufo.tasks()}
    assert sorted(tasks) == ["face", "product"]
    face = tasks["face"]
    assert (face.model_version, face.embedding_dim, face.input_size) == ("ufo_face/1", DIM, (64, 48))
    assert face.verification_threshold is not None and face.index_type
    readiness = ufo.ready()
    assert readiness.ready is True and readiness.checks["backend"] is True


def test_enroll_from_a_path_then_get_search_delete(ufo: UFOClient, face: list[bytes], tag: str,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "alice.pgm"
    path.write_bytes(face[0])
    item_id = f"{tag}/alice 1?#%ü"  # characters a URL path must escape; '/' stays inside the one id
    enrolled = ufo.enroll("face", id=item_id, image=path, metadata={"person": tag, "n": 1})
    assert (enrolled.ids, enrolled.count, enrolled.model_version) == ([item_id], 1, "ufo_face/1")

    item = ufo.get("face", item_id)
    assert (item.id, item.metadata, item.image_kept, item.embedding) == (item_id, {"person": tag, "n": 1}, True, None)
    stored = ufo.get("face", item_id, include_embedding=True).embedding
    assert stored is not None and len(stored) == DIM and abs(np.linalg.norm(stored) - 1) < 1e-4

    found = ufo.search("face", image=str(path), k=3, filter={"person": tag})
    assert [hit.id for hit in found.hits] == [item_id] and found.hits[0].score > 0.999
    assert found.hits[0].metadata == {"person": tag, "n": 1} and found.model_version == "ufo_face/1"
    assert found.no_match is False and found.threshold == pytest.approx(0.99999)

    ufo.delete("face", item_id)
    assert ufo.search("face", image=path, k=3, filter={"person": tag}).hits == []


def test_search_by_vector_with_k_filter_and_min_score(ufo: UFOClient, tag: str) -> None:
    for axis in range(3):
        ufo.enroll("face", id=f"{tag}-{axis}", embedding=np.asarray(unit(axis)), metadata={"run": tag, "axis": axis})
    query = np.asarray(unit(0)) + 0.5 * np.asarray(unit(1))  # closest to axis 0, then 1, orthogonal to 2
    ranked = ufo.search("face", embedding=query, k=3, filter={"run": tag})
    assert [hit.id for hit in ranked.hits] == [f"{tag}-0", f"{tag}-1", f"{tag}-2"]
    assert ranked.hits[0].score == pytest.approx(1 / np.sqrt(1.25), abs=1e-4)
    assert [hit.id for hit in ufo.search("face", embedding=query, k=1, filter={"run": tag}).hits] == [f"{tag}-0"]
    above = ufo.search("face", embedding=query, k=3, filter={"run": tag}, min_score=0.2)
    assert [hit.id for hit in above.hits] == [f"{tag}-0", f"{tag}-1"]
    only_axis_2 = ufo.search("face", embedding=query, k=3, filter={"run": tag, "axis": 2})
    assert [hit.id for hit in only_axis_2.hits] == [f"{tag}-2"] and only_axis_2.no_match is True


def test_enroll_many_from_every_kind_of_image(ufo: UFOClient, face: list[bytes], tag: str, tmp_path: Path) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(face[3])))
    path = tmp_path / "four.pgm"
    path.write_bytes(face[4])
    sources = [face[0], bytearray(face[1]), Image.open(io.BytesIO(face[2])), pixels, path,
               io.BytesIO(face[5]), str(path), pixels.astype(np.float32) / 255.0]
    items = [{"id": f"{tag}-{n}", "image": image, "metadata": {"run": tag}} for n, image in enumerate(sources)]
    items.append({"id": f"{tag}-vector", "embedding": unit(5), "metadata": {"run": tag}})
    enrolled = ufo.enroll_many("face", items, batch_size=4)  # 9 items: 3 requests (the server allows 8)
    assert isinstance(enrolled, Enrolled) and enrolled.count == 9
    assert enrolled.ids == [item["id"] for item in items]
    assert ufo.get("face", f"{tag}-3").image_kept and not ufo.get("face", f"{tag}-vector").image_kept
    # The array was sent losslessly: it finds the enrolled PGM it came from (and the float copy of it).
    hits = ufo.search("face", image=pixels, k=2, filter={"run": tag}).hits
    assert {hit.id for hit in hits} == {f"{tag}-3", f"{tag}-7"} and min(hit.score for hit in hits) > 0.99999


def test_embed_matches_what_enroll_stored(ufo: UFOClient, face: list[bytes], tag: str) -> None:
    result = ufo.embed("face", [face[0], face[1]])
    assert (len(result.embeddings), result.dim, result.model_version) == (2, DIM, "ufo_face/1")
    assert all(abs(np.linalg.norm(e) - 1) < 1e-4 for e in result.embeddings)
    ufo.enroll("face", id=tag, image=face[1])
    stored = ufo.get("face", tag, include_embedding=True).embedding
    assert np.allclose(result.embeddings[1], stored, atol=1e-5)


def test_verify(ufo: UFOClient, faces: dict[str, list[bytes]]) -> None:
    first, second = list(faces.values())[:2]
    same = ufo.verify("face", first[0], first[0])
    assert same.same is True and same.score > 0.99999 and same.model_version == "ufo_face/1"
    other = ufo.verify("face", first[0], second[0])
    assert other.score < same.score and other.same is False and other.threshold == pytest.approx(0.99999)


def test_index_status_and_rebuild(ufo: UFOClient, tag: str) -> None:
    ufo.enroll("face", id=tag, embedding=unit(7))
    status = ufo.index("face")
    assert status.task == "face" and status.dim == DIM and status.size >= 1 and status.state in ("ready", "rebuilding")
    job = ufo.rebuild_index("face")
    assert job.task == "face" and job.job_id and job.count == ufo.index("face").size
    assert job.state in ("queued", "running", "done")
