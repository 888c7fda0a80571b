"""Raw image bytes (`application/octet-stream`: the body is the image file) for embed, search and
`PUT .../items/{id}`, against a real server: the same answers as the JSON and multipart forms, and a clear
4xx problem for every malformed raw request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import LiveServer, start_server
from .test_bad_input import assert_problem, b64, jpeg

RAW = {"content-type": "application/octet-stream"}
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def server(api_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own: these tests enroll items, and the body limit is small enough to pass."""
    live = start_server(api_repo, tmp_path_factory.mktemp("raw-bytes"), limits__max_body_bytes=str(MAX_BODY),
                        limits__max_k="50")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="module")
def images(faces: dict[str, list[bytes]]) -> list[bytes]:
    return [faces["s29"][0], faces["s30"][0], faces["s31"][0]]


def test_raw_embed_equals_json_and_multipart(client: httpx.Client, images: list[bytes]) -> None:
    raw = client.post("/v1/tasks/face/embed", content=images[0], headers=RAW)
    as_json = client.post("/v1/tasks/face/embed", json={"images": [b64(images[0])]})
    as_form = client.post("/v1/tasks/face/embed", files=[("images", ("a.pgm", images[0]))])
    assert raw.status_code == as_json.status_code == as_form.status_code == 200, raw.text
    assert raw.headers["content-type"] == "application/json"
    body = raw.json()
    assert body == as_json.json() == as_form.json()
    assert len(body["embeddings"]) == 1 and len(body["embeddings"][0]) == body["dim"]


def test_put_enrolls_one_item_with_metadata_and_raw_search_finds_it(client: httpx.Client,
                                                                     images: list[bytes]) -> None:
    for i, image in enumerate(images):
        metadata = json.dumps({"person": f"p{i}", "n": i})
        answer = client.put(f"/v1/tasks/face/items/raw/{i}.pgm", content=image, headers=RAW,
                            params={"metadata": metadata})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ids"] == [f"raw/{i}.pgm"] and answer.json()["count"] == 1
    item = client.get("/v1/tasks/face/items/raw/1.pgm").json()
    assert item["metadata"] == {"person": "p1", "n": 1} and item["image_kept"] is True
    raw = client.post("/v1/tasks/face/search", content=images[1], headers=RAW, params={"k": 2})
    as_json = client.post("/v1/tasks/face/search", json={"image": b64(images[1]), "k": 2})
    assert raw.status_code == as_json.status_code == 200, raw.text
    assert raw.json() == as_json.json()
    assert [hit["id"] for hit in raw.json()["hits"]][0] == "raw/1.pgm" and len(raw.json()["hits"]) == 2


def test_put_without_metadata_upserts(client: httpx.Client, images: list[bytes]) -> None:
    assert client.put("/v1/tasks/face/items/raw/0.pgm", content=images[2], headers=RAW).status_code == 200
    assert client.get("/v1/tasks/face/items/raw/0.pgm").json()["metadata"] == {}
    top = client.post("/v1/tasks/face/search", content=images[2], headers=RAW, params={"k": 1}).json()["hits"][0]
    assert top["id"] in {"raw/0.pgm", "raw/2.pgm"} and top["score"] > 0.999


def test_query_options_of_a_raw_search(client: httpx.Client, images: list[bytes]) -> None:
    default = client.post("/v1/tasks/face/search", content=images[0], headers=RAW).json()
    assert len(default["hits"]) == 3  # k defaults to 10; three items enrolled
    strict = client.post("/v1/tasks/face/search", content=images[0], headers=RAW, params={"min_score": 1.01})
    assert strict.status_code == 200 and strict.json()["hits"] == []


def test_a_body_field_takes_precedence_over_the_query(client: httpx.Client, images: list[bytes]) -> None:
    answer = client.post("/v1/tasks/face/search", params={"k": 3}, json={"image": b64(images[0]), "k": 1})
    assert answer.status_code == 200 and len(answer.json()["hits"]) == 1
    default_from_query = client.post("/v1/tasks/face/search", params={"k": 2}, json={"image": b64(images[0])})
    assert len(default_from_query.json()["hits"]) == 2


@pytest.mark.parametrize("path", ["/v1/tasks/face/embed", "/v1/tasks/face/search", "/v1/tasks/face/items/x"])
def test_an_empty_raw_body_is_refused(client: httpx.Client, path: str) -> None:
    send = client.put if path.endswith("/x") else client.post
    assert_problem(send(path, content=b"", headers=RAW), 422, "empty", "image file")


@pytest.mark.parametrize("path", ["/v1/tasks/face/embed", "/v1/tasks/face/search", "/v1/tasks/face/items/x"])
def test_non_image_bytes_are_refused(client: httpx.Client, path: str) -> None:
    send = client.put if path.endswith("/x") else client.post
    body = assert_problem(send(path, content=b"this is not an image", headers=RAW), 422)
    assert body["type"] == "urn:ufo:problem:invalid-image"
    assert client.get("/v1/tasks/face/items/x").status_code == 404


def test_base64_text_sent_as_raw_bytes_is_not_decoded(client: httpx.Client) -> None:
    body = assert_problem(client.post("/v1/tasks/face/embed", content=b64(jpeg()).encode(), headers=RAW), 422)
    assert body["type"] == "urn:ufo:problem:invalid-image"


def test_wrong_content_types(client: httpx.Client) -> None:
    image = jpeg()
    assert_problem(client.post("/v1/tasks/face/embed", content=image, headers={"content-type": "image/jpeg"}),
                   415, "image/jpeg", "application/octet-stream")
    assert_problem(client.post("/v1/tasks/face/verify", content=image, headers=RAW), 415,
                   "application/json, multipart/form-data")  # verify takes two images: no raw form
    assert_problem(client.post("/v1/tasks/face/items", content=image, headers=RAW), 415)
    assert_problem(client.put("/v1/tasks/face/items/x", json={"image": b64(image)}), 415, "POST .../items")


def test_a_raw_body_over_the_limit_is_413(client: httpx.Client) -> None:
    too_big = b"\xff" * (MAX_BODY + 1)
    for send, path in ((client.post, "/v1/tasks/face/embed"), (client.put, "/v1/tasks/face/items/big")):
        assert_problem(send(path, content=too_big, headers=RAW), 413, "over the limit")


@pytest.mark.parametrize(("metadata", "needle"), [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"),
                                                  ('{"n": NaN}', "finite")])
def test_bad_metadata_in_the_query(client: httpx.Client, metadata: str, needle: str) -> None:
    answer = client.put("/v1/tasks/face/items/bad", content=jpeg(), headers=RAW, params={"metadata": metadata})
    assert_problem(answer, 422, needle)
    assert client.get("/v1/tasks/face/items/bad").status_code == 404


@pytest.mark.parametrize(("params", "needle"), [({"k": 0}, "k"), ({"k": "many"}, "k"), ({"k": 51}, "limit of 50"),
                                                ({"min_score": "nan"}, "min_score")])
def test_bad_query_options(client: httpx.Client, params: dict, needle: str) -> None:
    assert_problem(client.post("/v1/tasks/face/search", content=jpeg(), headers=RAW, params=params), 422, needle)


def test_a_multipart_form_carries_an_image_file_not_an_embedding(client: httpx.Client) -> None:
    form = client.post("/v1/tasks/face/items", data={"id": "form", "embedding": json.dumps([0.1] * 128)})
    assert_problem(form, 422, "embedding", "JSON body")
    search = client.post("/v1/tasks/face/search", data={"embedding": json.dumps([0.1] * 128)},
                         files={"unused": ("a.bin", b"x")})
    assert_problem(search, 422, "embedding")
    schema = client.get("/openapi.json").json()["paths"]["/v1/tasks/{task}/items"]["post"]["requestBody"]
    assert schema["content"]["multipart/form-data"]["schema"]["required"] == ["id", "image"]


def test_query_options_are_checked_even_when_the_body_gives_its_own(client: httpx.Client, images: list[bytes]) -> None:
    answer = client.post("/v1/tasks/face/search", params={"k": 51}, json={"image": b64(images[0]), "k": 1})
    assert_problem(answer, 422, "limit of 50")


def test_a_form_field_given_twice_is_refused(client: httpx.Client) -> None:
    answer = client.post("/v1/tasks/face/items", data={"id": ["a", "b"]}, files={"image": ("a.jpg", jpeg())})
    assert_problem(answer, 422, "body.id", "2 times")
    assert client.get("/v1/tasks/face/items/a").status_code == 404
