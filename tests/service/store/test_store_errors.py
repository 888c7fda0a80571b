"""Store failures are typed (StoreFull → 507, StoreUnavailable → 503) and never leave half a write behind.

Real failures only: SQLite's own SQLITE_FULL from a page cap, SQLITE_BUSY from another connection's lock,
SQLITE_READONLY from a file the process may not write (as the unprivileged `nobody` when the tests run as
root, who may write anything), and a real redis-server stopped under an open store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from service.store import Item, SQLiteStore, StoreFull, StoreUnavailable
from service.store.factory import open_store, sqlite_options
from tests.service.worker.conftest import RedisServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


def items(prefix: str, n: int, dim: int = 64) -> list[Item]:
    rng = np.random.default_rng(len(prefix) + n)
    xb = rng.standard_normal((n, dim)).astype(np.float32)
    return [Item(f"{prefix}{k}", xb[k] / np.linalg.norm(xb[k]), {"k": k}, "m/1") for k in range(n)]


async def test_sqlite_full_refuses_the_whole_batch_and_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "face.sqlite3"
    store = await SQLiteStore.open(path, max_pages=30)
    written = 0
    with pytest.raises(StoreFull, match="SQLITE_FULL"):
        for round_ in range(1000):
            await store.upsert(items(f"r{round_}-", 10))
            written += 10
    assert written > 0
    assert await store.count() == written
    assert await store.last_offset() == written  # no change-log row of the refused batch either
    assert await store.get(f"r{round_}-0") is None
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reopened = await SQLiteStore.open(path)  # the cap lifted (space freed): writes go on from the same state
    assert await reopened.upsert(items("after", 3)) == written + 3
    await reopened.close()


async def test_sqlite_locked_is_unavailable_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "face.sqlite3"
    store = await SQLiteStore.open(path, busy_timeout_ms=100)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreUnavailable, match="SQLITE_BUSY"):
        await store.upsert(items("a", 2))
    other.rollback()
    other.close()
    assert await store.upsert(items("a", 2)) == 2
    await store.close()


READ_ONLY_PROBE = """
import asyncio, sys
from service.store import SQLiteStore, StoreUnavailable
async def main():
    try:
        await SQLiteStore.open(sys.argv[1])
    except StoreUnavailable as exc:
        print("unavailable:", exc)
asyncio.run(main())
"""


async def test_sqlite_read_only_file_is_unavailable_not_corrupted(tmp_path: Path) -> None:
    as_root = os.geteuid() == 0  # root writes anything: probe as the unprivileged `nobody`, from a folder it reaches
    base = Path(tempfile.mkdtemp(prefix="ufo-ro-")) if as_root else tmp_path
    folder = base / "ro"
    path = folder / "face.sqlite3"
    store = await SQLiteStore.open(path)
    await store.upsert(items("a", 5))
    await store.close()
    os.chmod(base, 0o755)
    os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    try:
        options = {"user": "nobody", "group": _nobody_group()} if as_root else {}
        probe = subprocess.run([sys.executable, "-c", READ_ONLY_PROBE, str(path)], capture_output=True, text=True,
                               cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=60, **options)
        assert "unavailable:" in probe.stdout and "readonly" in probe.stdout, probe.stdout + probe.stderr
        assert str(path) in probe.stdout  # the message names the file
        os.chmod(folder, 0o755)
        os.chmod(path, 0o644)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 5
    finally:
        os.chmod(folder, 0o755)
        if as_root:
            shutil.rmtree(base)


def _nobody_group() -> str:
    import grp

    for name in ("nogroup", "nobody"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            pass
    pytest.skip("no unprivileged group to probe with")


async def test_redis_down_is_unavailable_and_reconnects(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        store = await open_store(redis.url, "face")
        assert await store.upsert(items("a", 3)) == 3
        redis.kill()
        with pytest.raises(StoreUnavailable, match="redis store"):
            await store.upsert(items("b", 3))
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            _ = [item async for item in store.iter_items()]
        redis.start()
        await store.ping()
        assert await store.count() == 3  # the AOF kept every acknowledged write
        assert await store.upsert(items("b", 3)) >= 6
        await store.close()
    finally:
        redis.kill()
    with pytest.raises(StoreUnavailable, match="ConnectionError"):
        await open_store(redis.url, "face")


def test_sqlite_url_options_are_checked() -> None:
    assert sqlite_options("sqlite:///var/s?max_pages=10&busy_timeout_ms=50") == (
        "var/s", {"max_pages": 10, "busy_timeout_ms": 50})
    assert sqlite_options("sqlite:////abs/s") == ("/abs/s", {})
    with pytest.raises(ValueError, match="unknown sqlite store option 'size'"):
        sqlite_options("sqlite:///var/s?size=1")
    with pytest.raises(ValueError, match="must be a positive integer"):
        sqlite_options("sqlite:///var/s?max_pages=-3")
    with pytest.raises(ValueError):
        sqlite_options("sqlite:///var/s?max_pages")
