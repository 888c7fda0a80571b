"""The OpenAPI document says what the running server enforces: security only where keys are required, the
configured limits, and patterns that agree with the server's own base64 and item-id checks."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.bodies import decode_base64
from service.api.errors import ApiError
from service.api.schemas import BASE64_PATTERN, ID_PATTERN
from service.app import create_app
from service.core.errors import Invalid
from service.core.gallery import check_id

from .conftest import app_settings

RECORD = "3fa85f64:read:" + "00" * 16 + ":" + "11" * 32


def openapi(tmp_path: Path, **overrides: object) -> dict:
    return create_app(app_settings(tmp_path / "repo", tmp_path, **overrides)).openapi()


def test_a_loopback_server_without_keys_declares_no_security(tmp_path: Path) -> None:
    schema = openapi(tmp_path)
    assert "securitySchemes" not in schema["components"]
    assert not any("security" in op for ops in schema["paths"].values() for op in ops.values())


def test_a_server_with_keys_declares_security_on_every_v1_operation(tmp_path: Path) -> None:
    schema = openapi(tmp_path, api_keys=[RECORD])
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert ("security" in operation) == path.startswith("/v1/"), path


def test_the_configured_limits_are_schema_bounds(tmp_path: Path) -> None:
    schema = openapi(tmp_path, limits={"max_k": 7, "max_images_per_request": 3, "max_items_per_request": 5})
    components = schema["components"]["schemas"]
    assert components["SearchRequest"]["properties"]["k"]["maximum"] == 7
    assert components["EmbedRequest"]["properties"]["images"]["maxItems"] == 3
    assert components["EnrollBatch"]["properties"]["items"]["maxItems"] == 5
    form = schema["paths"]["/v1/tasks/{task}/search"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["k"]["maximum"] == 7
    assert openapi(tmp_path / "other")["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"] == 1000


def accepted(function, value: str) -> bool:
    try:
        function(value, "x") if function is decode_base64 else function(value)
    except (ApiError, Invalid):  # the HTTP layer's refusal (base64) or the core's (an id)
        return False
    return True


@pytest.mark.parametrize("text", ["", "0", "0000", "QQ==", "QUI=", "QUJD", "QQ=", "Q===", "QQ==QQ==", "QU JD",
                                  "data:image/png;base64,QUJD", "data:,QQ==", "data:QUJD", "data:,"])
def test_the_base64_pattern_is_what_the_server_decodes(text: str) -> None:
    decodes = accepted(decode_base64, text) and len(decode_base64(text, "x")) > 0
    assert bool(re.fullmatch(BASE64_PATTERN, text)) == decodes


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=20) | st.text(alphabet="QUJDab+/=:,data", max_size=16))
def test_the_base64_pattern_agrees_on_generated_input(value) -> None:
    text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    decodes = accepted(decode_base64, text) and len(decode_base64(text, "x")) > 0
    assert bool(re.fullmatch(BASE64_PATTERN, text)) == decodes


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(min_size=1, max_size=40))
def test_the_id_pattern_is_what_the_server_accepts(item_id: str) -> None:
    assert bool(re.fullmatch(ID_PATTERN, item_id)) == accepted(check_id, item_id)
