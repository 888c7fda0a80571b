"""The exceptions the client raises.

Every error answer of the gateway is RFC 9457 problem+json (`type`, `title`, `status`, `detail`, `instance`);
it becomes an `APIError` subclass chosen by status, so callers catch what they can handle
(`except NotFound`, `except ServiceUnavailable`) and still read every field of the problem.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

PROBLEM_FIELDS = ("type", "title", "status", "detail", "instance")


class UFOError(Exception):
    """Base of every error this package raises about the service (not about the caller's arguments)."""


class UFOConnectionError(UFOError):
    """The request never got an answer: connection refused, DNS, timeout, broken connection."""


class UnexpectedResponse(UFOError):
    """A success status with a body that is not what the API documents (a proxy page, a version mismatch)."""

    def __init__(self, message: str, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response


class APIError(UFOError):
    """An error answer: the problem+json fields, the Retry-After delay if any, and the raw response."""

    def __init__(self, status: int, title: str, detail: str, *, type: str = "about:blank",
                 instance: str | None = None, retry_after: float | None = None,
                 extensions: dict[str, Any] | None = None, response: httpx.Response | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.instance = instance
        self.retry_after = retry_after
        self.extensions = extensions or {}
        self.response = response


class ClientError(APIError):
    """4xx: the request was refused; sending it again unchanged will not help (except 429)."""


class BadRequest(ClientError):
    """400: the body could not be read (e.g. a broken multipart form)."""


class Unauthorized(ClientError):
    """401: no API key, or an unknown one."""


class Forbidden(ClientError):
    """403: the API key lacks the scope (read, write, admin) this call needs."""


class NotFound(ClientError):
    """404: unknown task or item."""


class Conflict(ClientError):
    """409: e.g. an upgrade already running, a missing threshold, a model-version mismatch."""


class PayloadTooLarge(ClientError):
    """413: the request body is above the server's limit."""


class UnsupportedMediaType(ClientError):
    """415: the server does not read this content type."""


class InvalidInput(ClientError):
    """422: well-formed but unusable input (bad image, wrong embedding dimension, k above the limit...)."""


class TooManyRequests(ClientError):
    """429: the inference queue is full; `retry_after` says when to try again."""


class ServerError(APIError):
    """5xx: the server failed or cannot serve now."""


class ServiceUnavailable(ServerError):
    """503: the inference backend, index or store is unavailable; `retry_after` says when to try again."""


class GatewayTimeout(ServerError):
    """504: the request ran past the server's time limit."""


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    415: UnsupportedMediaType, 422: InvalidInput, 429: TooManyRequests, 503: ServiceUnavailable,
    504: GatewayTimeout,
}


def error_class(status: int) -> type[APIError]:
    """The most specific class for a status (ClientError / ServerError / APIError otherwise)."""
    if status in BY_STATUS:
        return BY_STATUS[status]
    return ClientError if 400 <= status < 500 else ServerError if status >= 500 else APIError


def problem_fields(response: httpx.Response) -> dict[str, Any]:
    """The problem+json object of an error answer, or {} when the body is not a JSON object."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_from_response(response: httpx.Response, retry_after: float | None = None) -> APIError:
    """The typed exception for an error answer; a body that is not problem+json still gives a readable one."""
    problem = problem_fields(response)
    status = response.status_code
    title = problem.get("title") or response.reason_phrase or "Error"
    detail = problem.get("detail")
    if not isinstance(detail, str):
        detail = response.text[:500] if not problem else json.dumps(problem)[:500]
    extensions = {k: v for k, v in problem.items() if k not in PROBLEM_FIELDS}
    return error_class(status)(status, str(title), detail, type=str(problem.get("type") or "about:blank"),
                               instance=problem.get("instance"), retry_after=retry_after,
                               extensions=extensions, response=response)
