"""Open the store for a task from a URL: `sqlite:///dir` (one file per task) or `redis://...`."""

from __future__ import annotations

from pathlib import Path

from service.store.base import GalleryStore

TASKS = ("face", "person", "vehicle", "product")


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


async def open_store(url: str, task: str) -> GalleryStore:
    """One store per task: `sqlite:///var/gallery` → var/gallery/<task>.sqlite3 (`sqlite:////abs`
    for an absolute path); `redis://host:6379/0` → keys under 'ufo:{<task>}'."""
    if not task or not task.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"task name must be alphanumeric (with - or _), got {task!r}")
    if store_kind(url) == "sqlite":
        from service.store.sqlite_store import SQLiteStore

        return await SQLiteStore.open(sqlite_path(url.removeprefix("sqlite:///"), task))
    from service.store.redis_store import RedisStore

    return await RedisStore.open(url, task)
