"""The one error mapping, and the per-request limits that need their own settings (timeout, metadata size)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.api.errors import ApiError, to_problem
from service.core.errors import Conflict, CoreError, Invalid, NotFound, Unavailable
from service.index.errors import DimensionError, ModelVersionError
from service.inference.errors import BackendUnavailable, InferenceError, InvalidImage, ModelNotFound, Overloaded
from service.store import StoreError

from .conftest import app_settings, running_app


@pytest.mark.parametrize(("error", "status", "retry_after"), [
    (InvalidImage("truncated", index=2), 422, None), (ModelNotFound("no model"), 404, None),
    (Overloaded("queue full", retry_after_s=2.5), 429, "3"), (BackendUnavailable("down", 0.2), 503, "1"),
    (DimensionError("dim 3"), 422, None), (ModelVersionError("v2"), 409, None), (ApiError(413, "big"), 413, None),
    (StoreError("disk on fire /secret/path"), 503, "1"), (TimeoutError(), 504, None),
])
def test_mapping(error: Exception, status: int, retry_after: str | None) -> None:
    response = to_problem(error, "/v1/x")
    body = json.loads(response.body)
    assert response.status_code == status == body["status"]
    assert response.media_type == "application/problem+json" and body["instance"] == "/v1/x"
    assert response.headers.get("retry-after") == retry_after
    assert "/secret/path" not in body["detail"]  # store internals stay in the log


@pytest.mark.parametrize(("error", "status", "slug", "retry_after"), [
    (Invalid("bad id"), 422, "invalid-input", None),
    (NotFound("no item", slug="unknown-item"), 404, "unknown-item", None),
    (Conflict("upgrading", slug="upgrade-running", retry_after_s=30), 409, "upgrade-running", "30"),
    (Unavailable("no index", retry_after_s=0.2), 503, "unavailable", "1"),
])
def test_the_cores_refusals_map_by_kind(error: CoreError, status: int, slug: str, retry_after: str | None) -> None:
    """The core raises kinds, not statuses: the kind picks the status, the error its slug and Retry-After."""
    response = to_problem(error, "/v1/x")
    body = json.loads(response.body)
    assert response.status_code == status == body["status"] and body["detail"] == error.detail
    assert body["type"] == f"urn:ufo:problem:{slug}"
    assert response.headers.get("retry-after") == retry_after


@pytest.mark.parametrize("error", [RuntimeError("boom at /srv/app.py line 3"), InferenceError("ORT exploded")])
def test_bugs_become_a_500_with_an_id_and_no_details(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    response = to_problem(error, "/v1/x")
    body = json.loads(response.body)
    assert response.status_code == 500 and "internal error (id " in body["detail"]
    assert str(error) not in body["detail"] and str(error) in caplog.text  # logged, not sent


@pytest.mark.anyio
async def test_request_timeout_and_small_limits(api_repo: Path, tmp_path: Path) -> None:
    limits = {"request_timeout_s": 1e-9, "max_metadata_bytes": 32, "max_k": 5}
    async with running_app(app_settings(api_repo, tmp_path, limits=limits)) as client:
        slow = await client.post("/v1/tasks/face/search", json={"embedding": [1.0] * 128, "k": 1})
        assert slow.status_code == 504 and slow.json()["status"] == 504
    async with running_app(app_settings(api_repo, tmp_path, limits={**limits, "request_timeout_s": 30})) as client:
        big = await client.post("/v1/tasks/face/items", json={"id": "m", "embedding": [1.0] * 128,
                                                               "metadata": {"note": "x" * 40}})
        assert big.status_code == 422 and "limit is 32" in big.json()["detail"]
        many = await client.post("/v1/tasks/face/search", json={"embedding": [1.0] * 128, "k": 6})
        assert many.status_code == 422 and "limit of 5" in many.json()["detail"]
