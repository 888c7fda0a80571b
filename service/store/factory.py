"""Open the store for a task from a URL: `sqlite:///dir` (one file per task) or `redis://...`.

SQLite URLs take options as a query: `sqlite:///var/ufo/store?max_pages=262144&busy_timeout_ms=5000`
(`max_pages`: a size cap in pages of 4 KiB, past which writes answer 507 as on a full disk; `busy_timeout_ms`:
how long a write waits for another process's lock before answering 503)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from service.store.base import GalleryStore


def sqlite_path(root: str | Path, task: str) -> Path:
    """Where a task's SQLite store lives under `root`."""
    return Path(root) / f"{task}.sqlite3"


def store_kind(url: str) -> str:
    """'sqlite' or 'redis' for a store URL; ValueError for any other."""
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    raise ValueError(f"unsupported store URL {url!r}: expected sqlite:///<dir> or redis://host:port/db")


SQLITE_OPTIONS = ("max_pages", "busy_timeout_ms")


def sqlite_options(url: str) -> tuple[str, dict[str, Any]]:
    """`sqlite:///dir?opt=value` → ('dir', {opt: int}); ValueError naming an unknown or non-integer option."""
    root, _, query = url.removeprefix("sqlite:///").partition("?")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in SQLITE_OPTIONS:
            raise ValueError(f"unknown sqlite store option {key!r} in {url!r}; known: {', '.join(SQLITE_OPTIONS)}")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"sqlite store option {key}={value!r} in {url!r} must be a positive integer")
        options[key] = int(value)
    return root, options


async def open_store(url: str, task: str) -> GalleryStore:
    """One store per task: `sqlite:///var/gallery` → var/gallery/<task>.sqlite3 (`sqlite:////abs`
    for an absolute path); `redis://host:6379/0` → keys under 'ufo:{<task>}'."""
    if not task or not task.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"task name must be alphanumeric (with - or _), got {task!r}")
    if store_kind(url) == "sqlite":
        from service.store.sqlite_store import SQLiteStore

        root, options = sqlite_options(url)
        return await SQLiteStore.open(sqlite_path(root, task), **options)
    from service.store.redis_store import RedisStore

    return await RedisStore.open(url, task)
