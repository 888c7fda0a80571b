"""The FastAPI application: `create_app(settings)` wires routes, middleware, errors and the lifespan.

Nothing heavy happens at import or in `create_app`: the lifespan starts the inference backend and opens
each task's store and index (`service.core.lifecycle`), and closes them on shutdown. Run it with `ufo serve`,
or `uvicorn --factory service.app:create_app`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import Scope

from service.api.auth import KeyRing, read_records
from service.api.errors import install_error_handlers
from service.api.middleware import BodyLimitMiddleware, MetricsMiddleware, TimeoutMiddleware
from service.api.ratelimit import RateLimiter
from service.api.routes import ROUTERS
from service.api.routes import ui as ui_routes
from service.api.schemas import BODY_MODELS, Problem
from service.config import Limits, Settings
from service.core.lifecycle import start_runtime, stop_runtime
from service.core.seed import enroll_configured
from service.metrics import GatewayMetrics

log = logging.getLogger(__name__)

DESCRIPTION = """Embed, enroll, search and verify images per task (face, person, vehicle, product), each served
by its trimmed UFO subnet and searched in its own FAISS index. Bodies are JSON (images as base64) or multipart
forms (images as files) with the same field names. Errors are `application/problem+json`."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Read the API keys and start the runtime before the first request; stop it (snapshotting indexes) after
    the last."""
    settings: Settings = app.state.settings
    app.state.keys = KeyRing(read_records(settings.api_keys, settings.api_keys_file), enforced=keys_enforced(settings))
    runtime = await start_runtime(settings, app.state.metrics)
    try:
        await enroll_configured(runtime)
    except BaseException:
        await stop_runtime(runtime)
        raise
    app.state.runtime = runtime
    log.info("serving %s on the %s backend", ", ".join(sorted(runtime.tasks)), settings.backend)
    try:
        yield
    finally:
        app.state.runtime = None
        await stop_runtime(runtime)


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>` (`ufo keys create`)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the key, as a header"},
}


def route_labels(app: FastAPI, scope: Scope) -> tuple[str, str]:
    """(route template, task) for metrics; an unknown task is reported as '' to bound the label set."""
    route = scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    task = (scope.get("path_params") or {}).get("task", "")
    runtime = getattr(app.state, "runtime", None)
    if runtime is None or task not in runtime.tasks:
        task = ""
    return template, task


def keys_enforced(settings: Settings) -> bool:
    """Whether requests need an API key (the key ring the lifespan builds, and the OpenAPI security)."""
    return settings.auth_required or bool(settings.api_keys or settings.api_keys_file)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the body models the routes reference by name (they parse bodies themselves),
    with what this server enforces: its limits, and security only where it requires keys."""
    if app.openapi_schema:
        return app.openapi_schema
    settings: Settings = app.state.settings
    schema = copy.deepcopy(  # the routes' form schemas are module constants: this app's limits go on a copy
        get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (*BODY_MODELS, Problem):
        spec = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(spec.pop("$defs", {}))
        components[model.__name__] = spec
    document_limits(components, schema["paths"], settings.limits)
    if keys_enforced(settings):  # a loopback server without keys lets every request through: no security then
        schema["components"]["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/"):  # every /v1 operation needs a key with some scope
                for operation in operations.values():
                    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    app.openapi_schema = schema
    return schema


def document_limits(components: dict[str, Any], paths: dict[str, Any], limits: Limits) -> None:
    """The request limits of these settings, as JSON Schema bounds of the bodies (JSON and multipart)."""
    forms = [content["multipart/form-data"]["schema"] for operations in paths.values()
             for operation in operations.values()
             if "multipart/form-data" in (content := operation.get("requestBody", {}).get("content", {}))]
    for body in [components["SearchRequest"], *forms]:
        if "k" in body["properties"]:
            body["properties"]["k"]["maximum"] = limits.max_k
    for operations in paths.values():  # `k` as a query parameter (search with an application/octet-stream body)
        for parameter in (p for operation in operations.values() for p in operation.get("parameters", [])):
            if parameter["name"] == "k" and parameter["in"] == "query":
                parameter["schema"]["maximum"] = limits.max_k
    for body in [components["EmbedRequest"], *forms]:
        if "images" in body["properties"]:
            body["properties"]["images"]["maxItems"] = limits.max_images_per_request
    components["EnrollBatch"]["properties"]["items"]["maxItems"] = limits.max_items_per_request


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (default: from the environment and UFO_CONFIG_FILE)."""
    settings = settings or Settings()
    app = FastAPI(title="UFO retrieval service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics = GatewayMetrics()
    app.state.runtime = None
    app.state.rate_limiter = RateLimiter(settings.rate_limit.requests_per_s, settings.rate_limit.burst)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(ui_routes.router)  # the visual search page at /ui

    def observe(scope: Scope, status: int, seconds: float) -> None:
        metrics.observe_request(*route_labels(app, scope), status, seconds)

    app.add_middleware(TimeoutMiddleware, seconds=settings.limits.request_timeout_s)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, observe=observe)  # added last: outermost
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
