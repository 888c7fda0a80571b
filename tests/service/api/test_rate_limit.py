"""Per-API-key rate limit over real HTTP: a key past its burst gets 429 + Retry-After, other keys are not
affected; the bucket refills at the configured rate (checked on a fake clock, no timing in the test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.api.auth import create_key
from service.api.errors import ApiError
from service.api.ratelimit import RateLimiter
from service.config import Settings

from .conftest import start_server


@pytest.mark.timeout(120)
def test_a_key_past_its_burst_gets_429_with_retry_after(api_repo: Path, tmp_path: Path) -> None:
    (busy, busy_record), (calm, calm_record) = create_key(["read"]), create_key(["read"])
    records = f'["{busy_record.render()}", "{calm_record.render()}"]'
    # 0.01 requests/s: one token per 100 s, so nothing refills while this test runs
    server = start_server(api_repo, tmp_path, api_keys=records, rate_limit__requests_per_s="0.01",
                          rate_limit__burst="3")
    try:
        busy_client = server.client(headers={"Authorization": f"Bearer {busy}"})
        assert [busy_client.get("/v1/tasks").status_code for _ in range(3)] == [200, 200, 200]
        refused = busy_client.get("/v1/tasks")
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"] == "urn:ufo:problem:rate-limited"
        assert busy_record.key_id in refused.json()["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 100
        calm_client = server.client(headers={"X-API-Key": calm})
        assert calm_client.get("/v1/tasks").status_code == 200  # its own bucket
        assert server.client().get("/healthz").status_code == 200  # probes are never limited
    finally:
        server.stop()


def test_the_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, clock=lambda: now[0])
    limiter.check("k")
    limiter.check("k")
    with pytest.raises(ApiError) as refused:
        limiter.check("k")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    now[0] = 0.5  # one token back at 2 per second
    limiter.check("k")
    with pytest.raises(ApiError):
        limiter.check("k")
    now[0] = 100.0  # never more than the burst
    limiter.check("k")
    limiter.check("k")
    with pytest.raises(ApiError):
        limiter.check("k")
    RateLimiter(0.0, 1).check("k")  # off


def test_bad_rate_limit_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="requests_per_s"):
        Settings(rate_limit={"requests_per_s": -1})
    with pytest.raises(ValidationError, match="burst"):
        Settings(rate_limit={"requests_per_s": 1, "burst": 0})
