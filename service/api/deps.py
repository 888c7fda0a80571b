"""FastAPI dependencies (`Annotated` aliases): the runtime, the task, the caller's scope, parsed bodies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request

from service.api import bodies
from service.api.auth import KeyRing, presented_key
from service.api.errors import ApiError
from service.core.state import Runtime, TaskRuntime

log = logging.getLogger(__name__)


# Every dependency is `async def`: FastAPI runs plain `def` dependencies in a thread pool, a thread hop per
# dependency per request that costs more than the work they do.


async def get_runtime(request: Request) -> Runtime:
    """The runtime the lifespan built (503 while the app is starting or stopping)."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(503, "the service is starting or stopping", headers={"Retry-After": "5"})
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_task(
    runtime: RuntimeDep,
    task: Annotated[str, Path(description="face, person, vehicle or product (see GET /v1/tasks)",
                              examples=["face"])],
) -> TaskRuntime:
    return runtime.task(task)


TaskDep = Annotated[TaskRuntime, Depends(get_task)]


def require(scope: str) -> Callable[..., Awaitable[None]]:
    """A dependency that lets the request through only with a key holding `scope` (when keys are enforced).

    It reads the headers itself rather than through FastAPI's security classes: one dependency instead of
    three per request (the OpenAPI security schemes are added by `service.app.build_openapi`)."""

    async def check(request: Request) -> None:
        await get_runtime(request)  # 503 while starting or stopping, before any key is checked
        keys: KeyRing = request.app.state.keys
        if not keys.enforced:
            return
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        if not key:
            raise ApiError(401, "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`",
                           headers={"WWW-Authenticate": "Bearer"})
        record = keys.authenticate(key)
        if record is None:
            raise ApiError(401, "the API key is not valid", headers={"WWW-Authenticate": "Bearer"})
        if not record.allows(scope):
            log.info("key %s refused: needs scope %s", record.key_id, scope)
            raise ApiError(403, f"this API key lacks the {scope!r} scope (it has {', '.join(sorted(record.scopes))})")
        request.app.state.rate_limiter.check(record.key_id)  # 429 + Retry-After past the key's rate

    check.__name__ = f"require_{scope}"
    return check


ReadScope = Depends(require("read"))
WriteScope = Depends(require("write"))
AdminScope = Depends(require("admin"))


def body_reader(read: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
    """A dependency parsing the request body with `read(request, limits)` (JSON or multipart)."""

    async def dependency(request: Request, runtime: RuntimeDep) -> object:
        return await read(request, runtime.settings.limits)

    dependency.__name__ = read.__name__
    return dependency


EmbedBody = Annotated[list[bytes], Depends(body_reader(bodies.read_embed))]
EnrollBody = Annotated[list[bodies.ItemInput], Depends(body_reader(bodies.read_enroll))]
SearchBody = Annotated[bodies.SearchInput, Depends(body_reader(bodies.read_search))]
VerifyBody = Annotated[tuple[bytes, bytes], Depends(body_reader(bodies.read_verify))]
