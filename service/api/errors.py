"""Every error becomes an RFC 9457 problem+json response here, and only here.

`ApiError` is the HTTP layer's own typed error; the core's refusals (`service.core.errors`) map by kind
(`CORE_STATUS`), and the typed errors of the inference, index and store packages map by class (their
`http_status` / `retry_after_s` where they carry one). Whatever else escapes a handler is a bug: it is logged
with its traceback and an error id, and the client gets a 500 that names the id and nothing of the trace.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.core.errors import Conflict, CoreError, Invalid, NotFound, Unavailable
from service.index.errors import DimensionError, IndexUnavailable, ModelVersionError
from service.inference.errors import InferenceServiceError, InvalidImage
from service.store.base import StoreError
from service.store.redis_store import store_error as redis_store_error

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
_SLUGS = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
    409: "conflict", 413: "payload-too-large", 415: "unsupported-media-type", 422: "invalid-input",
    429: "overloaded", 500: "internal-error", 503: "unavailable", 504: "timeout", 507: "insufficient-storage",
}
_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Payload too large", 415: "Unsupported media type", 422: "Invalid input",
    429: "Too many requests", 500: "Internal server error", 503: "Service unavailable", 504: "Gateway timeout",
    507: "Insufficient storage",
}

CORE_STATUS: dict[type[CoreError], int] = {Invalid: 422, NotFound: 404, Conflict: 409, Unavailable: 503}


class ApiError(Exception):
    """An error the gateway answers on purpose: status, a problem type slug, a detail for the client."""

    def __init__(self, status: int, detail: str, *, slug: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _SLUGS.get(status, "error")
        self.headers = dict(headers or {})


def invalid(detail: str, *, slug: str | None = None) -> ApiError:
    """422: the request is well-formed but says something we cannot use."""
    return ApiError(422, detail, slug=slug)


def problem(status: int, detail: str, *, slug: str | None = None, instance: str | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": f"urn:ufo:problem:{slug or _SLUGS.get(status, 'error')}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": printable(detail),
    }
    if instance:
        body["instance"] = printable(instance)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_TYPE)


def printable(text: str) -> str:
    """Text safe to encode as UTF-8: details may quote client input holding lone surrogates."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def retry_headers(seconds: float | None) -> dict[str, str]:
    """Retry-After in whole seconds (at least 1)."""
    return {} if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> str:
    """pydantic errors as one readable line: 'body.k: Input should be greater than 0; ...'."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "__root__")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def to_problem(exc: BaseException, path: str) -> JSONResponse:
    """The one mapping from an exception to the response the client sees."""
    if isinstance(exc, ApiError):
        return problem(exc.status, exc.detail, slug=exc.slug, instance=path, headers=exc.headers)
    if isinstance(exc, CoreError):
        status = next(code for kind, code in CORE_STATUS.items() if isinstance(exc, kind))
        return problem(status, exc.detail, slug=exc.slug, instance=path, headers=retry_headers(exc.retry_after_s))
    if isinstance(exc, InferenceServiceError):
        status = exc.http_status
        if status >= 500 and status != 503:
            return internal_error(exc, path)
        # an image that matches the API schema yet does not decode: a type of its own, as JSON Schema cannot say it
        slug = "invalid-image" if isinstance(exc, InvalidImage) else None
        return problem(status, str(exc), slug=slug, instance=path,
                       headers=retry_headers(getattr(exc, "retry_after_s", None)))
    if isinstance(exc, DimensionError):
        return problem(422, str(exc), slug="invalid-embedding", instance=path)
    if isinstance(exc, ModelVersionError):
        return problem(409, str(exc), slug="model-version-mismatch", instance=path)
    if isinstance(exc, IndexUnavailable):  # a Milvus index engine down or too slow
        return problem(503, str(exc), instance=path, headers=retry_headers(exc.retry_after_s))
    if isinstance(exc, StoreError):
        return store_problem(exc, path)
    if isinstance(exc, RedisError):  # the job queue's Redis (the store's own errors arrive typed)
        return store_problem(redis_store_error(exc, "job queue"), path)
    if isinstance(exc, TimeoutError):
        return problem(504, "the request did not finish within the server's time limit", instance=path)
    return internal_error(exc, path)


def store_problem(exc: StoreError, path: str) -> JSONResponse:
    """503 + Retry-After while the store is away, 507 when it is full; the detail says which, not its internals."""
    log.error("store error on %s: %s", path, exc)
    if exc.http_status == 507:
        detail = "the gallery store is full: nothing of this request was written; an operator must free space"
    else:
        detail = "the gallery store is unavailable; retry after Retry-After seconds (writes are idempotent upserts)"
    return problem(exc.http_status, detail, instance=path, headers=retry_headers(exc.retry_after_s))


def internal_error(exc: BaseException, path: str) -> JSONResponse:
    """500 with an error id the logs hold the traceback under; no trace reaches the client."""
    error_id = uuid.uuid4().hex[:12]
    log.error("unhandled error %s on %s", error_id, path, exc_info=(type(exc), exc, exc.__traceback__))
    return problem(500, f"internal error (id {error_id}); the server logged the details", instance=path)


def allowed_methods(request: Request) -> list[str]:
    """The methods some route answers at the request's path (GET and DELETE of one item are two routes)."""
    routes = request.app.router.routes
    return [method for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping for every exception type the app can raise."""

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return to_problem(exc, request.url.path)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, describe_validation(exc.errors()), instance=request.url.path)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route of the path; list every route's
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, detail, instance=request.url.path, headers=headers)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # Known types are mapped inside the middleware stack (metrics see their status); anything else reaches
    # Starlette's outermost handler, which answers with our 500 problem.
    for known in (ApiError, CoreError, InferenceServiceError, DimensionError, ModelVersionError, StoreError, RedisError,
                  TimeoutError, Exception):
        app.add_exception_handler(known, on_error)
