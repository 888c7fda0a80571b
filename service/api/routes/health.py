"""GET /healthz (the process answers), /readyz (models, backend, stores and indexes all OK), /metrics.

Readiness includes each task's gallery store: while it is away (Redis down, SQLite unreadable) writes answer
503, so the load balancer should stop sending traffic; searches the gateway still receives keep answering from
the in-memory index (200). The checks run concurrently, each bounded by HEALTH_TIMEOUT_S."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.api.schemas import Readiness
from service.core.state import Runtime, TaskRuntime
from service.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
HEALTH_TIMEOUT_S = 2.0  # a probe must answer fast even when the backend hangs


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and its event loop answers."""
    return {"status": "ok"}


async def backend_healthy(runtime: Runtime) -> bool:
    try:
        return await asyncio.wait_for(runtime.backend.health(), HEALTH_TIMEOUT_S)
    except (TimeoutError, Exception):  # noqa: BLE001 - a failing check is simply not ready
        return False


async def store_check(task: TaskRuntime) -> str:
    """'ok', or why the task's store does not answer."""
    try:
        await asyncio.wait_for(task.store.ping(), HEALTH_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {HEALTH_TIMEOUT_S:g} s"
    except Exception as exc:  # noqa: BLE001 - a failing check is simply not ready
        return str(exc) or type(exc).__name__
    return "ok"


def index_check(task: TaskRuntime) -> str:
    """'ok', or why the task's index cannot serve (including: behind another replica's model upgrade)."""
    if task.problem or task.index is None:
        return task.problem or "not loaded"
    return (task.follower.health_problem if task.follower is not None else None) or "ok"


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: models loaded, inference backend reachable, every task's index loaded. 503 otherwise."""
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return JSONResponse({"ready": False, "checks": {"started": False}}, status_code=503)
    indexes = {name: index_check(t) for name, t in runtime.tasks.items()}
    tasks = list(runtime.tasks.values())
    backend, *store_states = await asyncio.gather(backend_healthy(runtime), *(store_check(t) for t in tasks))
    stores = {t.task: state for t, state in zip(tasks, store_states, strict=True)}
    checks = {"backend": backend, "models": sorted(runtime.backend.models()), "stores": stores, "indexes": indexes}
    ready = bool(backend and checks["models"] and all(v == "ok" for v in (*indexes.values(), *stores.values())))
    runtime.metrics.ready.set(1 if ready else 0)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
