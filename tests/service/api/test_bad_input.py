"""Every bad input of the issue gets a 4xx problem+json that says what was wrong, and the server keeps serving."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from .conftest import LiveServer

DIM = 128


@pytest.fixture(scope="module")
def client(embedded_server: LiveServer) -> Iterator[httpx.Client]:
    with embedded_server.client() as http:
        yield http


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def jpeg(size: tuple[int, int] = (48, 64)) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_claiming(width: int, height: int) -> bytes:
    """A valid PNG whose IHDR declares width × height, with a tiny IDAT: nothing big is ever allocated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + png_chunk(b"IEND", b""))


def assert_problem(response: httpx.Response, status: int, *needles: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:ufo:problem:") and body["title"]
    assert "Traceback" not in body["detail"]
    for needle in needles:
        assert needle.lower() in body["detail"].lower(), body["detail"]
    return body


IMAGE_CASES = {
    "truncated_jpeg": (jpeg()[:400], "truncated"),
    "zero_bytes": (b"", "zero bytes"),
    "text_file": (b"name,score\nalice,3\n", "not an image"),
    "png_claiming_20000x20000": (png_header_claiming(20000, 20000), "too many pixels"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_image_files(client: httpx.Client, case: str) -> None:
    data, needle = IMAGE_CASES[case]
    files = [("images", ("upload.bin", data, "application/octet-stream"))]
    assert_problem(client.post("/v1/tasks/face/embed", files=files), 422, needle)
    if data:  # JSON refuses an empty string before decoding (min length)
        assert_problem(client.post("/v1/tasks/face/embed", json={"images": [b64(data)]}), 422, needle)
    search = client.post("/v1/tasks/face/search", files={"image": ("q.bin", data)}, data={"k": "3"})
    assert_problem(search, 422)


def test_bad_image_among_good_ones_is_named_by_position(client: httpx.Client) -> None:
    body = {"images": [b64(jpeg()), b64(jpeg()[:300])]}
    assert_problem(client.post("/v1/tasks/face/embed", json=body), 422, "image 1", "truncated")


@pytest.mark.parametrize("text", ["not base64!", "QUJD=A", "%%%%"])
def test_non_base64(client: httpx.Client, text: str) -> None:
    assert_problem(client.post("/v1/tasks/face/embed", json={"images": [text]}), 422, "images[0]", "base64")
    assert_problem(client.post("/v1/tasks/face/verify", json={"image_a": text, "image_b": text}), 422, "base64")


@pytest.mark.parametrize(("embedding", "needle"), [
    ([0.1] * 5, "5 dimensions"), ([0.1] * (DIM + 1), f"{DIM + 1} dimensions"),
    ([0.0] * DIM, "norm"),
])
def test_wrong_embeddings(client: httpx.Client, embedding: list[float], needle: str) -> None:
    item = {"id": "bad-embedding", "embedding": embedding}
    assert_problem(client.post("/v1/tasks/face/items", json=item), 422, needle)
    assert_problem(client.post("/v1/tasks/face/search", json={"embedding": embedding}), 422, needle)
    assert client.get("/v1/tasks/face/items/bad-embedding").status_code == 404  # nothing was written


def test_nan_and_infinite_embeddings(client: httpx.Client) -> None:
    values = ", ".join(["0.1"] * (DIM - 1))
    for token in ("NaN", "Infinity"):
        body = f'{{"id": "nan", "embedding": [{token}, {values}]}}'.encode()
        response = client.post("/v1/tasks/face/items", content=body, headers={"content-type": "application/json"})
        assert_problem(response, 422, "NaN or Infinity")
        query = f'{{"embedding": [{values}, {token}]}}'.encode()
        response = client.post("/v1/tasks/face/search", content=query, headers={"content-type": "application/json"})
        assert_problem(response, 422)


def test_unknown_task(client: httpx.Client) -> None:
    body = assert_problem(client.post("/v1/tasks/cats/embed", json={"images": [b64(jpeg())]}), 404, "unknown task")
    assert "face" in body["detail"]  # says what is served
    assert_problem(client.get("/v1/tasks/vehicle/index"), 404, "unknown task 'vehicle'")


@pytest.mark.parametrize(("k", "needle"), [(0, "greater than or equal to 1"), (-3, "greater than or equal to 1"),
                                           (10**6, "above the limit"), (10**30, "")])
def test_bad_k(client: httpx.Client, k: int, needle: str) -> None:
    response = client.post("/v1/tasks/face/search", json={"embedding": [0.1] * DIM, "k": k})
    assert_problem(response, 422, needle)


def test_oversized_bodies(client: httpx.Client, embedded_server: LiveServer) -> None:
    big = b"x" * 1_500_000  # the test server's limit is 1 MB
    declared = client.post("/v1/tasks/face/embed", content=big, headers={"content-type": "application/json"})
    assert_problem(declared, 413, "over the limit")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(15):
            yield b"y" * 100_000

    streamed = client.post("/v1/tasks/face/embed", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(streamed, 413, "over the limit")


@pytest.mark.parametrize(("metadata", "needle"), [
    ([1, 2], "valid dictionary"), ("person", "valid dictionary"), ({"blob": "x" * 5000}, "limit is 4096"),
])
def test_bad_metadata(client: httpx.Client, metadata: object, needle: str) -> None:
    item = {"id": "bad-metadata", "embedding": [0.1] * DIM, "metadata": metadata}
    assert_problem(client.post("/v1/tasks/face/items", json=item), 422, "metadata", needle)
    form = client.post("/v1/tasks/face/items", data={"id": "bad-metadata", "metadata": "{not json"},
                       files={"image": ("a.jpg", jpeg())})
    assert_problem(form, 422, "metadata", "not valid JSON")


def test_malformed_requests(client: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    assert_problem(client.post("/v1/tasks/face/search", content=b"{\"k\": 3", headers=headers), 422, "json")
    assert_problem(client.post("/v1/tasks/face/search", json={"k": 3}), 422, "exactly one of")
    assert_problem(client.post("/v1/tasks/face/items", json={"id": "x", "image": b64(jpeg()), "embedding": [1.0]}),
                   422, "exactly one of")
    assert_problem(client.post("/v1/tasks/face/items", json={"id": "", "embedding": [1.0] * DIM}), 422, "id")
    assert_problem(client.post("/v1/tasks/face/verify", json={"image_a": b64(jpeg())}), 422, "image_b")
    assert_problem(client.post("/v1/tasks/face/embed", content=b"hi", headers={"content-type": "text/plain"}),
                   415, "text/plain")
    assert_problem(client.post("/v1/tasks/face/embed", json={"images": [b64(jpeg())] * 33}), 422, "limit is 32")
    assert_problem(client.post("/v1/tasks/face/search", json={"embedding": [0.1] * DIM, "surprise": 1}), 422,
                   "surprise")


def test_server_keeps_serving(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    response = client.post("/v1/tasks/face/embed", json={"images": [b64(jpeg())]})
    assert response.status_code == 200 and len(response.json()["embeddings"][0]) == DIM
