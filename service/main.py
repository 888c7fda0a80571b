"""`ufo serve`: run the gateway under uvicorn. Also `python -m service.main` (same flags).

Flags override the settings from the environment (UFO_*) and the YAML file named by UFO_CONFIG_FILE;
everything else (backend, Triton URL, store, limits, keys) comes from there. With the FAISS engine, one
process per data folder: the index lives in this process (scale out with the Redis store and replicas).
`--workers N` runs N gateway processes on one port (uvicorn's workers, each building the app from the same
settings: `worker_app`), allowed only where no index state is per process: the Milvus engine on a Milvus
server URI (`check_workers`). There the workers serve one gallery like replicas: same collections and
store; `auto_upgrade` is off (N processes would race to upgrade: use the admin route, run by one of them,
and the others adopt it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `ufo --help` builds these flags without loading pydantic
    from service.config import Settings

log = logging.getLogger(__name__)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `ufo serve` (defaults come from Settings: 127.0.0.1:8080)."""
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1; env UFO_HOST). "
                        "A non-loopback address requires API keys")
    parser.add_argument("--port", type=int, default=None, help="port (default 8080; env UFO_PORT)")
    parser.add_argument("--repository", default=None, help="model repository (env UFO_REPOSITORY)")
    parser.add_argument("--backend", choices=("embedded", "triton"), default=None,
                        help="inference backend (default embedded; env UFO_BACKEND)")
    parser.add_argument("--data-dir", default=None, help="index snapshots and kept images (env UFO_DATA_DIR)")
    parser.add_argument("--store-url", default=None, help="sqlite:///<dir> or redis://host:port/db (env UFO_STORE_URL)")
    parser.add_argument("--enroll", action="append", default=[], metavar="TASK=DIR",
                        help="enroll DIR/<label>/<image> files into TASK's gallery at start (repeatable)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="gateway processes on the port (default 1); N > 1 needs UFO_INDEX__ENGINE=milvus "
                        "with a Milvus server UFO_MILVUS__URI (http://host:19530), not FAISS or a Milvus Lite file")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings with the given flags taking precedence over the environment and the YAML file."""
    from service.config import Settings

    flags = {"host": args.host, "port": args.port, "repository": args.repository, "backend": args.backend,
             "data_dir": args.data_dir, "store_url": args.store_url, "enroll": parse_enroll(args.enroll) or None}
    return Settings(**{k: v for k, v in flags.items() if v is not None})


def parse_enroll(values: list[str]) -> dict[str, str]:
    """['face=data/demo/face/test'] → {'face': 'data/demo/face/test'}."""
    pairs = {}
    for value in values:
        task, sep, folder = value.partition("=")
        if not sep or not task or not folder:
            raise ValueError(f"--enroll takes TASK=DIR, got {value!r}")
        pairs[task] = folder
    return pairs


def check_store_url(url: str, timeout_s: float = 5.0) -> None:
    """Fail before any model loads, in one line naming the setting, when the store URL is unusable: an
    unknown scheme, a malformed Redis URL, or a Redis server that does not answer."""
    from service.store.factory import store_kind

    try:
        kind = store_kind(url)
    except ValueError as exc:
        raise ValueError(f"UFO_STORE_URL={url!r} is not a supported store URL ({exc})") from None
    if kind == "sqlite":
        return
    import asyncio

    import redis.asyncio as redis

    async def ping() -> None:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:  # noqa: BLE001 - every cause is reported the same way, with its text
        raise ValueError(f"UFO_STORE_URL={url!r}: the Redis store does not answer ({type(exc).__name__}: {exc}); "
                         "start redis-server or fix the URL") from None


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse `--workers N > 1` (one line saying why) where each process would hold its own index."""
    from service.index.milvus_settings import is_lite

    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if workers == 1:
        return
    if settings.index.engine != "milvus":
        raise ValueError(f"--workers {workers} needs UFO_INDEX__ENGINE=milvus with a Milvus server: the "
                         f"{settings.index.engine} engine keeps each task's index and its rebuild jobs inside one "
                         "process (scale FAISS out with replicas on the Redis store instead)")
    if is_lite(settings.milvus.uri):
        raise ValueError(f"--workers {workers} needs a Milvus server URI (http://host:19530), not the Milvus Lite "
                         f"file UFO_MILVUS__URI={settings.milvus.uri!r}: a Lite file is opened by one process only")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"
SETTINGS_ENV = "UFO_SERVE_SETTINGS"  # the settings `worker_app` builds each worker's app from (JSON)


def worker_app():  # noqa: ANN201 - FastAPI
    """The app factory each `--workers` process calls (uvicorn imports it by name): the parent's settings."""
    from service.app import create_app
    from service.config import Settings

    settings = Settings(**json.loads(os.environ[SETTINGS_ENV]))
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)  # a spawned process: no handlers yet
    return create_app(settings)


def serve(settings: Settings, *, access_log: bool = True, workers: int = 1) -> None:
    """Run uvicorn with the app until SIGINT/SIGTERM (the lifespan snapshots the indexes on the way out);
    `workers` > 1: that many processes, each running `worker_app` (see the module docstring)."""
    import uvicorn

    from service.api.auth import read_records
    from service.app import create_app

    check_workers(settings, workers)
    read_records(settings.api_keys, settings.api_keys_file)  # a bad record fails here, before any model loads
    check_store_url(settings.store_url)
    if not settings.repository.is_dir():
        raise ValueError(f"model repository {settings.repository} is not a folder: pass --repository (e.g. "
                         "demo/models) or set UFO_REPOSITORY, or create one with `ufo export`")
    logging.getLogger().setLevel(settings.log_level.upper())
    log.info("ufo serve on http://%s:%d (%s backend, repository %s, %d worker process%s)", settings.host,
             settings.port, settings.backend, settings.repository, workers, "es" if workers > 1 else "")
    options = {"host": settings.host, "port": settings.port, "log_config": None, "access_log": access_log,
               "timeout_graceful_shutdown": 10, "server_header": False}
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    if settings.auto_upgrade:
        log.info("auto_upgrade is off with --workers: %d processes would race; upgrade with the admin route",
                 workers)
    worker_settings = settings.model_copy(update={"auto_upgrade": False})
    os.environ[SETTINGS_ENV] = worker_settings.model_dump_json(exclude_unset=False)
    uvicorn.run("service.main:worker_app", factory=True, workers=workers, **options)


def cli_serve(args: argparse.Namespace) -> int:
    """Entry point of `ufo serve`."""
    serve(settings_from_args(args), access_log=not args.no_access_log, workers=args.workers)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.main", description="run the UFO retrieval gateway")
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return cli_serve(args)
    except ValueError as exc:  # settings refused (e.g. a public bind without keys): say why, no traceback
        print(f"ufo serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
