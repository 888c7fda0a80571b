"""The client's models and calls against the OpenAPI document of a running gateway (GET /openapi.json).

Compared: each model's field names, which are required, and each field's basic JSON type (string, integer,
number, boolean, null, arrays of what, which schema a reference names). Constraints (minLength, formats...)
are the server's to enforce and are not compared. Every call the client makes must be a documented
operation, with its JSON body documented as the schema of the model the client builds it with.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from tests.service.api.conftest import LiveServer
from ufo_client import calls
from ufo_client.models import SERVER_SCHEMAS, EnrollBatch, EnrollItem, SearchRequest, VerifyRequest
from ufo_client.models import EmbedRequest as EmbedBody
from ufo_client.models import UpgradeRequest as UpgradeBody

CLIENT_TO_SERVER = {model.__name__: name for model, name in SERVER_SCHEMAS.items()}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def openapi(live: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{live.url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def shape(schema: dict[str, Any], rename: dict[str, str]) -> Any:
    """A hashable summary of a JSON schema: basic types, array items, referenced schema names."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return ("ref", rename.get(name, name))
    for union in ("anyOf", "oneOf"):
        if union in schema:
            variants = frozenset(shape(s, rename) for s in schema[union])
            return next(iter(variants)) if len(variants) == 1 else ("union", variants)
    kind = schema.get("type")
    if isinstance(kind, list):
        return ("union", frozenset((k,) for k in kind))
    if kind == "array":
        if "prefixItems" in schema:
            return ("tuple", tuple(shape(s, rename) for s in schema["prefixItems"]))
        return ("array", shape(schema.get("items", {}), rename))
    return (kind or "any",)


def fields(schema: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
    """name → (required, shape) for every property of an object schema."""
    required = set(schema.get("required", []))
    return {name: (name in required, shape(prop, rename)) for name, prop in schema.get("properties", {}).items()}


def client_fields(model: type[BaseModel]) -> dict[str, Any]:
    return fields(model.model_json_schema(ref_template="#/components/schemas/{model}"), CLIENT_TO_SERVER)


@pytest.mark.parametrize("model", list(SERVER_SCHEMAS), ids=lambda m: m.__name__)
def test_models_match_the_server_schemas(model: type[BaseModel], openapi: dict[str, Any]) -> None:
    server = openapi["components"]["schemas"].get(SERVER_SCHEMAS[model])
    assert server is not None, f"the server documents no schema {SERVER_SCHEMAS[model]!r}"
    theirs, ours = fields(server, {}), client_fields(model)
    assert sorted(ours) == sorted(theirs), f"{model.__name__}: field names differ"
    for name, (required, kind) in theirs.items():
        assert ours[name][0] == required, f"{model.__name__}.{name}: required is {required} on the server"
        assert ours[name][1] == kind, f"{model.__name__}.{name}: {ours[name][1]} here, {kind} on the server"


def the_calls() -> list[tuple[calls.Call[Any], type[BaseModel] | None]]:
    """One of every call the client makes, with the model its JSON body is built from (None: no JSON body)."""
    return [
        (calls.tasks(), None), (calls.embed("face", [PNG, PNG]), EmbedBody), (calls.embed("face", [PNG]), None),
        (calls.enroll("face", "a/b", image=PNG, metadata={"n": 1}), None),
        (calls.enroll("face", "a/b", embedding=[1.0]), EnrollItem),
        (next(calls.enroll_batches("face", [{"id": "a", "embedding": [1.0]}])), EnrollBatch),
        (calls.get("face", "a/b"), None), (calls.delete("face", "a"), None),
        (calls.search("face", embedding=[1.0]), SearchRequest), (calls.search("face", image=PNG, k=3), None),
        (calls.search("face", image=PNG, filter={"n": 1}), SearchRequest),
        (calls.verify("face", PNG, PNG), VerifyRequest),
        (calls.index("face"), None), (calls.rebuild_index("face"), None), (calls.model_status("face"), None),
        (calls.upgrade("face", 2), UpgradeBody), (calls.ready(), None),
    ]


def operation(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The documented operation whose path template matches `path`."""
    for template, operations in openapi["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?:path\\\}", ".+", re.escape(template))
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not a documented operation")


def test_every_call_is_a_documented_operation(openapi: dict[str, Any]) -> None:
    for call, body_model in the_calls():
        documented = operation(openapi, call.method, call.path)
        names = {p["name"] for p in documented.get("parameters", []) if p["in"] == "query"}
        assert set(call.params or {}) <= names, f"{call.method} {call.path}: undocumented query {call.params}"
        if call.content is not None:  # a raw image body
            schema = documented["requestBody"]["content"]["application/octet-stream"]["schema"]
            assert schema["format"] == "binary" and body_model is None
            continue
        if body_model is None:
            assert call.json is None
            continue
        schema = documented["requestBody"]["content"]["application/json"]["schema"]
        names = {s["$ref"].rsplit("/", 1)[1] for s in schema.get("oneOf", schema.get("anyOf", [schema]))
                 if "$ref" in s}
        assert SERVER_SCHEMAS[body_model] in names, f"{call.method} {call.path}: body documented as {schema}"


def test_one_image_travels_as_the_raw_body() -> None:
    embed, search, enroll = (calls.embed("face", [PNG]), calls.search("face", image=PNG, k=3, min_score=0.5),
                             calls.enroll("face", "a/b", image=PNG, metadata={"n": 1}))
    assert embed.content == search.content == enroll.content == PNG and embed.json is None
    assert dict(search.params or {}) == {"k": 3, "min_score": 0.5}
    assert (enroll.method, enroll.path, dict(enroll.params or {})) == ("PUT", "/v1/tasks/face/items/a%2Fb",
                                                                      {"metadata": '{"n": 1}'})
    request = search.request(httpx.Client(base_url="http://gateway"))
    assert request.headers["content-type"] == "application/octet-stream" and request.content == PNG
