"""Malformed input and refused requests: arguments the client can judge fail before sending (ValueError,
TypeError), the server's refusals come back as typed exceptions carrying the problem+json fields. Against
the real gateway, with the sync and the async client.
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from tests.service.api.conftest import LiveServer
from ufo_client import (
    APIError,
    ClientError,
    Forbidden,
    InvalidInput,
    NotFound,
    UFOClient,
    UFOConnectionError,
    Unauthorized,
)
from ufo_client.errors import error_from_response

from .conftest import DIM


def test_unknown_task_is_not_found_with_the_problem_fields(ufo: UFOClient) -> None:
    with pytest.raises(NotFound) as caught:
        ufo.search("faces", embedding=[1.0] * DIM)
    error = caught.value
    assert isinstance(error, ClientError) and isinstance(error, APIError)
    assert (error.status, error.title, error.type) == (404, "Not found", "urn:ufo:problem:unknown-task")
    assert "faces" in error.detail and error.instance == "/v1/tasks/faces/search"
    assert str(error).startswith("404 Not found: ")


def test_unknown_item_is_not_found(ufo: UFOClient) -> None:
    with pytest.raises(NotFound, match="no-such-item"):
        ufo.get("face", "no-such-item")
    with pytest.raises(NotFound, match="has no item '..'") as dots:
        ufo.delete("face", "..")  # sent as one escaped segment, not resolved to another path
    assert dots.value.type == "urn:ufo:problem:unknown-item"


def test_arguments_are_checked_before_sending(ufo: UFOClient, face: list[bytes]) -> None:
    with pytest.raises(ValueError, match="exactly one of `image` or `embedding`"):
        ufo.search("face", k=3)
    with pytest.raises(ValueError, match="exactly one of `image` or `embedding`"):
        ufo.enroll("face", id="x", image=face[0], embedding=[1.0] * DIM)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ufo.search("face", embedding=[1.0] * DIM, k=0)
    with pytest.raises(ValidationError, match="finite"):
        ufo.search("face", embedding=[float("nan")] * DIM)
    with pytest.raises(ValueError, match="task must be a non-empty string"):
        ufo.index("")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        ufo.embed("face", ["/no/such/image.png"])
    with pytest.raises(TypeError, match="a list of images"):
        ufo.embed("face", face[0])
    with pytest.raises(ValueError, match="empty"):
        ufo.verify("face", b"", face[0])
    with pytest.raises(TypeError, match=r"items\[1\]: .*unexpected keyword argument 'img'"):
        ufo.enroll_many("face", [{"id": "a", "embedding": [1.0] * DIM}, {"id": "b", "img": face[0]}])
    with pytest.raises(ValueError, match="at least one item"):
        ufo.enroll_many("face", [])


def test_server_refusals_are_invalid_input(ufo: UFOClient, face: list[bytes]) -> None:
    with pytest.raises(InvalidInput) as not_an_image:
        ufo.enroll("face", id="broken", image=b"these bytes are no image")
    assert not_an_image.value.status == 422 and not_an_image.value.type.startswith("urn:ufo:problem:")
    with pytest.raises(InvalidInput, match="dimension|dim"):
        ufo.search("face", embedding=[1.0, 0.0, 0.0])
    with pytest.raises(InvalidInput, match="limit"):
        ufo.search("face", embedding=[1.0] * DIM, k=100_000)
    with pytest.raises(InvalidInput, match="limit is 8"):  # the server takes at most 8 items per request
        ufo.enroll_many("face", [{"id": f"many-{n}", "embedding": [1.0] * DIM} for n in range(9)])


def test_keys_and_scopes(live: LiveServer, keys: dict[str, str]) -> None:
    with UFOClient(live.url) as anonymous, pytest.raises(Unauthorized) as no_key:
        anonymous.tasks()
    assert no_key.value.status == 401 and no_key.value.response is not None
    with UFOClient(live.url, api_key="ufo_deadbeef_wrong") as wrong, pytest.raises(Unauthorized):
        wrong.tasks()
    with UFOClient(live.url, api_key=keys["read"]) as reader:
        assert reader.tasks()
        with pytest.raises(Forbidden, match="'write' scope"):
            reader.enroll("face", id="refused", embedding=[1.0] * DIM)
        with pytest.raises(Forbidden):
            reader.upgrade("product")
    with pytest.raises(ValueError, match="api_key is empty"):
        UFOClient(live.url, api_key=" ")


def test_no_server_is_a_connection_error() -> None:
    with UFOClient("http://127.0.0.1:9", timeout=5) as nowhere, pytest.raises(UFOConnectionError, match="/v1/tasks"):
        nowhere.tasks()


@pytest.mark.parametrize(("status", "body", "detail"), [
    (502, b"<html>bad gateway</html>", "<html>bad gateway</html>"),
    (418, b'{"title": "Teapot", "status": 418, "hint": "tea"}', '{"title": "Teapot", "status": 418, "hint": "tea"}'),
])
def test_answers_that_are_not_problem_json_still_raise_readably(status: int, body: bytes, detail: str) -> None:
    response = httpx.Response(status, content=body, request=httpx.Request("GET", "http://gateway/v1/tasks"))
    error = error_from_response(response)
    assert error.status == status and error.detail == detail
    assert isinstance(error, ClientError) == (status < 500)
    assert error.extensions == ({"hint": "tea"} if status == 418 else {})
