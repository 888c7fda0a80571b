"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs latency): metrics, body limit, timeout.

Order, outermost first: `MetricsMiddleware` (sees every status, including the 413 and 504 below), then
`BodyLimitMiddleware` (413 from Content-Length before reading, or as soon as a streamed body passes the
limit), then `TimeoutMiddleware` (504 when a request runs past the per-request limit; its work is cancelled).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import ApiError, problem

log = logging.getLogger(__name__)


async def send_problem(scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None,
                       receive: Receive | None = None) -> None:
    """Answer with a problem+json response directly at the ASGI level."""
    response = problem(status, detail, instance=scope.get("path"), headers=headers)
    await response(scope, receive or _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class MetricsMiddleware:
    """Count and time every HTTP request by route template, task and status."""

    def __init__(self, app: ASGIApp, observe: Callable[[Scope, int, float], None]) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, Starlette's outermost handler answers 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.observe(scope, status, time.perf_counter() - started)


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_problem(scope, send, 413, f"request body of {int(declared)} bytes is over the limit of "
                               f"{self.max_bytes} bytes", headers={"Connection": "close"})
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, f"request body is over the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)


class TimeoutMiddleware:
    """504 when a request has not finished after `seconds` (the handler's work is cancelled)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            log.warning("%s %s timed out after %.1f s", scope.get("method"), scope.get("path"), self.seconds)
            if not started:
                await send_problem(scope, send, 504, f"the request did not finish within {self.seconds:g} s")
