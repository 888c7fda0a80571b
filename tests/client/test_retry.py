"""Retries on 503/429 with Retry-After, bounded.

A real gateway with a per-key rate limit answers 429 + Retry-After, which the client waits out and retries.
The gateway offers no cheap way to answer 503 on demand here (its 503s need a dead Triton worker or store),
so for 503 an httpx.MockTransport stands in front of the real gateway: it answers 503 (or 429) a set number
of times, then passes the request on to the real server. The waits are recorded by replacing the client's
sleep function, so no assertion depends on timing.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import anyio
import httpx
import pytest

from tests.service.api.conftest import LiveServer, start_server
from ufo_client import AsyncUFOClient, RetryPolicy, ServiceUnavailable, TooManyRequests, UFOClient
from ufo_client import client as client_module
from ufo_client.retry import retry_after_s

from .conftest import DIM

PROBLEM_503 = {"type": "urn:ufo:problem:unavailable", "title": "Service unavailable", "status": 503,
               "detail": "the inference backend (triton) is unavailable"}


class Flaky:
    """Answers `status` with Retry-After `after` to the first `failures` requests, then forwards to `upstream`."""

    def __init__(self, upstream: str, failures: int, after: str | None = "2", status: int = 503) -> None:
        self.upstream, self.failures, self.after, self.status = upstream, failures, after, status
        self.bodies: list[bytes] = []

    def refuse(self, request: httpx.Request) -> httpx.Response | None:
        self.bodies.append(request.content)
        if len(self.bodies) > self.failures:
            return None
        headers = {"Retry-After": self.after} if self.after is not None else {}
        return httpx.Response(self.status, json={**PROBLEM_503, "status": self.status}, headers=headers)

    def sync(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            refused = self.refuse(request)
            if refused is not None:
                return refused
            with httpx.Client(base_url=self.upstream, headers=request.headers) as upstream:
                answer = upstream.request(request.method, request.url.raw_path.decode(), content=request.content)
                return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
        return httpx.MockTransport(handle)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=waits.append))  # only the client's sleep
    return waits


@pytest.fixture(scope="module")
def limited(client_repo: Path, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[LiveServer]:
    """A gateway allowing each key 1 request at once, refilled at 2 per second."""
    server = start_server(client_repo, tmp_path_factory.mktemp("limited"), api_keys=keys["records"],
                          rate_limit__requests_per_s="2", rate_limit__burst="1")
    yield server
    server.stop()


def test_a_real_429_is_waited_out_then_answered(limited: LiveServer, keys: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)  # really wait: the server's bucket refills meanwhile

    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=sleep))
    with UFOClient(limited.url, api_key=keys["read"]) as client:
        answers = [client.tasks() for _ in range(3)]  # the 2nd and 3rd come after at least one 429
    assert all(len(tasks) == 2 for tasks in answers)
    assert len(waits) >= 2 and set(waits) == {1.0}  # Retry-After: 1, as the server said
    with UFOClient(limited.url, api_key=keys["read"], retry=RetryPolicy(max_retries=0)) as client, \
            pytest.raises(TooManyRequests) as refused:
        client.tasks()
        client.tasks()
    assert refused.value.retry_after == 1.0 and refused.value.status == 429


def test_503_is_retried_after_retry_after_then_answered_by_the_server(live: LiveServer, keys: dict[str, str],
                                                                      sleeps: list[float]) -> None:
    flaky = Flaky(live.url, failures=2)
    with UFOClient(live.url, api_key=keys["admin"], transport=flaky.sync()) as client:
        enrolled = client.enroll("face", id="retried", embedding=[1.0] + [0.0] * (DIM - 1))
    assert enrolled.ids == ["retried"] and sleeps == [2.0, 2.0]
    assert len(flaky.bodies) == 3 and len(set(flaky.bodies)) == 1  # the same request, sent again whole


def test_retries_are_bounded_and_the_last_error_is_raised(sleeps: list[float]) -> None:
    flaky = Flaky("http://unused", failures=100, after=None)
    policy = RetryPolicy(max_retries=2, backoff_s=0.25)
    with UFOClient("http://gateway", transport=flaky.sync(), retry=policy) as client, \
            pytest.raises(ServiceUnavailable) as caught:
        client.tasks()
    assert len(flaky.bodies) == 3 and sleeps == [0.25, 0.5]  # no Retry-After: exponential backoff
    assert caught.value.detail == PROBLEM_503["detail"] and caught.value.retry_after is None


def test_a_wait_longer_than_allowed_is_not_waited_for(sleeps: list[float]) -> None:
    flaky = Flaky("http://unused", failures=100, after="120", status=429)
    with UFOClient("http://gateway", transport=flaky.sync()) as client, pytest.raises(TooManyRequests) as caught:
        client.tasks()
    assert len(flaky.bodies) == 1 and sleeps == [] and caught.value.retry_after == 120.0


def test_readiness_503_is_an_answer_not_retried(sleeps: list[float]) -> None:
    def not_ready(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"ready": False, "checks": {"backend": False}}, headers={"Retry-After": "1"})
    with UFOClient("http://gateway", transport=httpx.MockTransport(not_ready)) as client:
        assert client.ready().ready is False and sleeps == []


def test_async_client_retries_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(client_module, "anyio", SimpleNamespace(sleep=record))
    attempts: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) < 3:
            return httpx.Response(503, json=PROBLEM_503, headers={"Retry-After": "1"})
        return httpx.Response(200, json={"tasks": []})

    async def main() -> None:
        async with AsyncUFOClient("http://gateway", transport=httpx.MockTransport(handle)) as client:
            assert await client.tasks() == []

    anyio.run(main)
    assert len(attempts) == 3 and waits == [1.0, 1.0]


def test_retry_after_forms() -> None:
    now = time.time()
    assert retry_after_s("7") == 7.0 and retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert retry_after_s(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    with pytest.raises(ValueError, match="must be >= 0"):
        RetryPolicy(max_retries=-1)
